"""biasprune: find, prune and test the transfer of racial-bias components in chat language models.

The library has no Snakemake dependency: every function takes plain values and paths, so each piece is
testable without a workflow. `workflow/scripts/*.py` are thin wrappers that unpack the `snakemake` object.
"""

__version__ = "0.1.0"

"""Rule `export_pruned`: save the model with the mask of config `export` applied."""

import torch

from biasprune.export import export_pruned
from biasprune.logs import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = snakemake.params.export
    record = export_pruned(
        snakemake.input.model,
        snakemake.input.masks,
        spec["condition"],
        spec["setting"],
        snakemake.output.model,
        spec["ablation"],
    )
    print(record)

# biasprune: run `snakemake` here. The workflow itself is workflow/Snakefile (the catalog's layout).


include: "workflow/Snakefile"

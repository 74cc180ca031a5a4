"""Rule `figure`: the figure named by the `figure` wildcard (workflow/rules/common.smk FIGURES), from the metric
tables or the placement masks, as PNG and SVG."""

import pandas as pd

from biasprune import figures
from biasprune.logs import log_to

with log_to(snakemake.log[0]):
    name = snakemake.wildcards.figure
    if name == "baseline":
        figure = figures.baseline(pd.read_parquet(snakemake.input.table))
    elif name == "transfer":
        figure = figures.transfer(pd.read_parquet(snakemake.input.table))
    elif name in ("components", "overlap"):
        per_layer, heads, overlap = figures.placement(snakemake.input.masks)
        figure = figures.components(per_layer, heads) if name == "components" else figures.overlap(overlap)
    else:
        draw = {
            "before_after": figures.before_after,
            "tradeoff": figures.tradeoff,
            "units": figures.units_by_level,
        }
        figure = draw[name](pd.read_parquet(snakemake.input.table))
    figures.save(figure, snakemake.output.png, snakemake.output.svg)

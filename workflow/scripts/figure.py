"""Rule `figure`: the figure named by the `figure` wildcard (workflow/rules/common.smk FIGURES; drawn as
report.figures.APPENDIX says), from its metric table or the placement of its masks, as PNG and SVG."""

import pandas as pd

from biasprune.logs import log_to
from biasprune.report import figures
from biasprune.report.placement import mask_placement

with log_to(snakemake.log[0]):
    reads, draw = figures.APPENDIX[snakemake.wildcards.figure]
    data = (
        pd.read_parquet(snakemake.input.table) if reads == "table" else mask_placement(snakemake.input.masks)
    )
    figures.save(draw(data), snakemake.output.png, snakemake.output.svg)

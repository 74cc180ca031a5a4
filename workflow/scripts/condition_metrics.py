"""Rule `condition_metrics`: every condition against the unpruned model, and the transfer matrix."""

import pandas as pd
import pyarrow as pa

from biasprune.conditions import condition_tables_of_files
from biasprune.io import write_parquet
from biasprune.logs import log_to

with log_to(snakemake.log[0]):
    conditions, transfer, names = condition_tables_of_files(
        snakemake.input.prompts,
        snakemake.input.answers,
        snakemake.input.evaluated,
        snakemake.input.damage,
        snakemake.input.manifests,
        snakemake.params.sets,
        snakemake.params.groups,
        snakemake.params.metrics,
    )
    conditions.insert(0, "model", snakemake.wildcards.model)
    transfer.insert(0, "model", snakemake.wildcards.model)
    provenance = {"metrics": snakemake.params.metrics}
    for key, table in {"conditions": conditions, "transfer": transfer, "names": names}.items():
        write_parquet(
            pa.Table.from_pandas(table, preserve_index=False), getattr(snakemake.output, key), provenance
        )
    with pd.option_context("display.width", 220, "display.max_columns", 14, "display.max_rows", 200):
        print(
            transfer[
                ["unit", "method", "setting", "selection", "evaluated", "reduction", "matched_reduction_mean"]
            ]
        )

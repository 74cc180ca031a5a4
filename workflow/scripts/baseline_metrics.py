"""Rule `baseline_metrics`: the bias audit of the unpruned model over every domain."""

import logging

import pandas as pd
import pyarrow as pa

from biasprune.io import write_parquet
from biasprune.logs import log_to
from biasprune.metrics import bias_table, labelled_answers

with log_to(snakemake.log[0]):
    logging.basicConfig(level=logging.INFO, force=True)
    metrics = snakemake.params.metrics
    table = bias_table(
        labelled_answers(snakemake.input.answers, snakemake.input.prompts),
        snakemake.params.groups,
        resamples=metrics["bootstrap"],
        confidence=metrics["confidence"],
        seed=metrics["seed"],
        permutations=metrics["permutations"],
        winsorize=metrics["winsorize"],
    )
    table.insert(0, "model", snakemake.wildcards.model)
    write_parquet(
        pa.Table.from_pandas(table, preserve_index=False), snakemake.output.table, {"metrics": metrics}
    )
    with pd.option_context("display.width", 200, "display.max_columns", 12):
        print(table[["domain", "variation", "n_ref", "n_focal", "smd", "smd_low", "smd_high", "abs_smd_p"]])

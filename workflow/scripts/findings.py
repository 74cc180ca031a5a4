"""Rule `findings`: the study's claims checked on this run's condition metrics."""

from datetime import date

import pandas as pd
import pyarrow as pa

from biasprune.findings import findings
from biasprune.io import source_commit, write_parquet
from biasprune.logs import log_to

with log_to(snakemake.log[0]):
    table = findings(
        pd.read_parquet(snakemake.input.conditions),
        pd.read_parquet(snakemake.input.names),
        snakemake.params.groups,
        snakemake.params.metrics,
    )
    # the checkout and day that wrote the verdicts: what the results page names (scripts/results_at_a_glance.py)
    provenance = {"commit": source_commit(), "written": date.today().isoformat()}
    write_parquet(pa.Table.from_pandas(table, preserve_index=False), snakemake.output.table, provenance)
    with pd.option_context("display.width", 200, "display.max_colwidth", 120):
        print(table[["claim", "units", "setting", "verdict", "contrast", "estimate", "low", "high", "cells"]])

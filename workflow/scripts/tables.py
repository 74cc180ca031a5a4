"""Rule `tables`: the metric tables as CSV files for the paper's authors (written atomically)."""

import pandas as pd

from biasprune.io import atomic_path
from biasprune.logs import log_to

with log_to(snakemake.log[0]):
    for name in ("baseline", "conditions", "transfer", "findings"):
        with atomic_path(snakemake.output[name]) as tmp:
            pd.read_parquet(snakemake.input[name]).to_csv(tmp, index=False)

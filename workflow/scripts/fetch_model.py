"""Rule `fetch_model`: obtain one model of the registry into resources/models/{model}/."""

import time

from biasprune.logs import log_to
from biasprune.models import fetch_model

with log_to(snakemake.log[0]):
    start = time.perf_counter()
    fetch_model(snakemake.wildcards.model, snakemake.params.source, snakemake.output.model)
    print(f"fetched {snakemake.wildcards.model} in {time.perf_counter() - start:.1f} s")

"""Rule `fetch_model`: obtain one model of the registry into resources/models/{model}/."""

import time

from biasprune.logs import log_to
from biasprune.models import fetch_model

with log_to(snakemake.log[0]):
    start = time.perf_counter()
    model = snakemake.wildcards.model
    # Not a param: the entry a failed download points to changes no byte of the model, so no refetch.
    hub = snakemake.config["model_registry"][model].get("hub")
    fetch_model(model, snakemake.params.source, snakemake.output.model, hub)
    print(f"fetched {snakemake.wildcards.model} in {time.perf_counter() - start:.1f} s")

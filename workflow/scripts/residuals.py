"""Rule `residuals`: stream the residual cache of one domain (every layer at the last name token and the
answer position) to Parquet, batch by batch."""

import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from biasprune.activations import cache_residuals, write_cache
from biasprune.io import sha256_file
from biasprune.logs import log_to
from biasprune.models import load_model

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = snakemake.params.model
    model, tokenizer = load_model(snakemake.input.model, spec["device"], spec["dtype"])
    prompts = pq.read_table(snakemake.input.prompts).to_pylist()
    provenance = {
        "model": snakemake.wildcards.model,
        "sequence_prefix": snakemake.params.sequence_prefix,
        "prompts_sha256": sha256_file(snakemake.input.prompts),
        "torch": torch.__version__,
    }
    batches = cache_residuals(
        model,
        tokenizer,
        prompts,
        snakemake.params.sequence_prefix,
        batch_size=snakemake.resources.batch_size,
        progress=tqdm,
    )
    rows = write_cache(batches, snakemake.output.cache, provenance)
    print(f"{len(prompts)} prompts cached in {rows} rows")

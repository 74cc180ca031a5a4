"""Rule `activations`: stream the activation cache of one domain to Parquet, batch by batch."""

import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from biasprune.activations import cache_activations, write_cache
from biasprune.io import sha256_file
from biasprune.logs import log_to
from biasprune.models import load_model
from biasprune.specs import Answer

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec, settings = snakemake.params.model, snakemake.params.activations
    model, tokenizer = load_model(
        snakemake.input.model, spec["device"], spec["dtype"], attn_implementation="eager"
    )
    prompts = pq.read_table(snakemake.input.prompts).to_pylist()
    exact = (snakemake.params.attribution_readout or {}).get("mode") == "exact"
    columns = ["prompt_id", "sample", "text", "grid_probs", "support", "probs"]
    trees = ["tree_nodes", "tree_kept", "tree_endings"] if exact else []
    missing = sorted(set(trees) - set(pq.read_schema(snakemake.input.answers).names))
    if missing:
        raise ValueError(
            f"{snakemake.input.answers}: attribution through the exact readout reads the explored tree, but "
            f"the file has no {', '.join(missing)} (written before the tree was stored); delete it so that "
            "`answers` writes it again"
        )
    answers = pq.read_table(snakemake.input.answers, columns=columns + trees).to_pylist()
    provenance = {
        "model": snakemake.wildcards.model,
        "activations": settings,
        "prompts_sha256": sha256_file(snakemake.input.prompts),
        "answers_sha256": sha256_file(snakemake.input.answers),
        "torch": torch.__version__,
    }
    batches = cache_activations(
        model,
        tokenizer,
        prompts,
        answers,
        Answer(**snakemake.params.answer),
        positions=settings["positions"],
        batch_size=snakemake.resources.batch_size,
        attribution=settings["attribution"],
        attribution_batch_size=snakemake.resources.attribution_batch_size,
        sequence_prefix=snakemake.params.sequence_prefix,
        progress=tqdm,
        readout=snakemake.params.attribution_readout,
    )
    rows = write_cache(batches, snakemake.output.cache, provenance)
    print(f"{len(prompts)} prompts cached in {rows} rows")

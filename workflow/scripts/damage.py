"""Rule `damage`: KL(base || pruned) on the neutral prompts for every mask of one scope."""

import pyarrow.parquet as pq
import torch

from biasprune.ablation import head_means
from biasprune.damage import damage_table
from biasprune.io import write_parquet
from biasprune.logs import log_to
from biasprune.maskfile import load_masks
from biasprune.models import load_model

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec, settings = snakemake.params.model, snakemake.params.evaluate
    model, tokenizer = load_model(snakemake.input.model, spec["device"], spec["dtype"])
    manifest, masks = load_masks(snakemake.input.masks, model)
    texts = pq.read_table(snakemake.input.neutral)["text"].to_pylist()
    ablation = settings.get("head_ablation", "zero")
    means = head_means(model, tokenizer, texts) if ablation == "mean" else None
    table = damage_table(model, tokenizer, manifest, masks, texts, ablation, means)
    write_parquet(table, snakemake.output.table, {"model": snakemake.wildcards.model, "evaluate": settings})
    print(table.to_pandas().to_string())

"""Rule `evaluate`: one domain's prompts under every mask of one scope that is evaluated there."""

import json

import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from biasprune.ablation import head_means
from biasprune.evaluate import evaluate_domain
from biasprune.io import write_parquet
from biasprune.logs import log_to
from biasprune.maskfile import load_masks
from biasprune.models import load_model
from biasprune.specs import Answer

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec, settings = snakemake.params.model, snakemake.params.evaluate
    model, tokenizer = load_model(snakemake.input.model, spec["device"], spec["dtype"])
    manifest, masks = load_masks(snakemake.input.masks, model)
    means = None
    if hasattr(snakemake.input, "neutral"):  # heads, mean ablation
        means = head_means(model, tokenizer, pq.read_table(snakemake.input.neutral)["text"].to_pylist())
    table = evaluate_domain(
        model,
        tokenizer,
        manifest,
        masks,
        pq.read_table(snakemake.input.prompts).to_pylist(),
        pq.read_table(snakemake.input.answers),
        Answer(**snakemake.params.answer),
        {"batch_size": snakemake.resources.batch_size, **snakemake.params.readout},
        cross_in_sample=settings.get("cross_in_sample", False),
        ablation=settings.get("head_ablation", "zero"),
        means=means,
        progress=tqdm,
    )
    provenance = {
        "model": snakemake.wildcards.model,
        "readout": snakemake.params.readout,
        "evaluate": settings,
        "masks_config_hash": manifest["config_hash"],
        "torch": torch.__version__,
    }
    write_parquet(table, snakemake.output.answers, provenance)
    counts = table.group_by(["condition", "setting", "control"]).aggregate([("prompt_id", "count")])
    print(json.dumps(counts.to_pylist(), indent=1))

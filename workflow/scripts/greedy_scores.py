"""Rule `greedy_scores`: the authors' greedy head order per variation of one domain."""

import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from biasprune.folds import per_fold
from biasprune.greedy import greedy_scores, greedy_steps
from biasprune.io import write_parquet
from biasprune.logs import log_to
from biasprune.models import ModelAdapter, load_model
from biasprune.specs import Answer

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = snakemake.params.model
    model, tokenizer = load_model(
        snakemake.input.model, spec["device"], spec["dtype"], attn_implementation="eager"
    )
    adapter = ModelAdapter.of(model)
    steps = greedy_steps(adapter.n_layers * adapter.n_heads, snakemake.params.heads)
    answers = pq.read_table(
        snakemake.input.answers, columns=["prompt_id", "sample", "text", "grid_probs", "support", "probs"]
    )
    prompts, answers = pq.read_table(snakemake.input.prompts).to_pylist(), answers.to_pylist()
    # once on all names, once per fold on the names it does not hold out (folds.py)
    table = per_fold(
        snakemake.params.folds,
        lambda held_out: greedy_scores(
            model,
            tokenizer,
            [row for row in prompts if row["name"] not in held_out],
            answers,
            Answer(**snakemake.params.answer),
            snakemake.params.groups,
            steps,
            snakemake.params.sequence_prefix,
            snakemake.resources.batch_size,
            progress=tqdm,
        ),
    )
    provenance = {"method": "greedy_attention", "steps": steps, "folds": snakemake.params.folds}
    write_parquet(table, snakemake.output.scores, provenance)
    print(f"greedy: {steps} steps per variation")

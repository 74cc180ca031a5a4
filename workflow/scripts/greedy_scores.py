"""Rule `greedy_scores`: the authors' greedy head order per variation of one domain."""

import pyarrow.parquet as pq
import torch
from tqdm import tqdm

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
    table = greedy_scores(
        model,
        tokenizer,
        pq.read_table(snakemake.input.prompts).to_pylist(),
        answers.to_pylist(),
        Answer(**snakemake.params.answer),
        snakemake.params.groups,
        steps,
        snakemake.params.sequence_prefix,
        snakemake.resources.batch_size,
        progress=tqdm,
    )
    write_parquet(table, snakemake.output.scores, {"method": "greedy_attention", "steps": steps})
    print(f"greedy: {steps} steps per variation")

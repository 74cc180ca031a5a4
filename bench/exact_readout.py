"""The exact readout against sampling, in one run on the same prompts: time per prompt and the spread of the
SMD over seeds for the project's batched sampler at the paper's n = 100, the exact head alone (no spread, but
its unexplored mass is left out) and the head with a sampled tail (sum and sample: unbiased, its spread from
the tail draws). The cost-per-variance curve: for each head budget x tail draws, the sampler's time to reach
the same SD (its SD falls as 1/sqrt(n), so n = 100 x (SD_sampler / SD)^2) over the configuration's time.
The authors' loop (one `generate` call per sample) is timed on one prompt. Goals (issue 25): at least 5x
against the sampler at equal SD, 100x against the authors' loop.

    .venv/bin/python bench/exact_readout.py [--prompts 16] [--seeds 6]   (about fifteen minutes on 2 cores)
"""

import argparse

import numpy as np
import pandas as pd
import torch
from common import embedded_model, purchase_prompts, timed

from biasprune.metrics import bias_table
from biasprune.readouts import read_answers
from biasprune.tokens import chat_prompt

parser = argparse.ArgumentParser()
parser.add_argument("--prompts", type=int, default=16)
parser.add_argument("--seeds", type=int, default=6)
parser.add_argument("--n", type=int, default=100)
# head budgets (max_nodes) x tail draws; the head alone is the default budget without draws
parser.add_argument("--budgets", type=int, nargs="+", default=[64, 128, 512])
parser.add_argument("--draws", type=int, nargs="+", default=[16, 64])
args = parser.parse_args()

model, tokenizer = embedded_model()
every, answer = purchase_prompts(64)  # the first variation's prompts; half of the chosen ones per group
rows = [
    row for race in ("White", "Black") for row in [r for r in every if r["race"] == race][: args.prompts // 2]
]
base = {"batch_size": 8, "use_prefix": True, "max_new_tokens": 10, "max_answer_chars": 200}
sampler = {"temperature": 0.6, "top_p": 0.9}
labels = pd.DataFrame(rows)[["prompt_id", "domain", "variation", "name", "race"]]


def smd(columns) -> float:
    answers = pd.DataFrame(columns).merge(labels, on="prompt_id")
    table = bias_table(answers, ("White", "Black"), resamples=100, permutations=1000)
    return float(table.loc[table["level"] == "variation", "smd"].iloc[0])


def measured(settings: dict, seeds: int) -> dict:
    """Median time per prompt, the SMD's mean and SD over seeds, and the readout's mean masses."""
    times, smds, found = [], [], {}
    for seed in range(seeds):
        run = {**settings, "sample": {**settings["sample"], "seed": seed}}
        times.append(
            timed(lambda run=run: found.__setitem__("a", read_answers(model, tokenizer, rows, answer, run)))
        )
        smds.append(smd(found["a"]))
    columns = pd.DataFrame(found["a"])
    return {
        "s_per_prompt": np.median(times) / len(rows),
        "smd": np.mean(smds),
        "smd_sd": np.std(smds, ddof=1) if seeds > 1 else 0.0,
        "unexplored": columns["mass_unexplored"].mean() if "mass_unexplored" in columns else np.nan,
        "sampled": columns["mass_sampled"].mean() if "mass_sampled" in columns else np.nan,
    }


def exact(max_nodes: int, draws: int) -> dict:
    settings = {"epsilon": 0.01, "max_nodes": max_nodes, "width": 32, "tail_draws": draws}
    return {**base, "mode": "exact", "sample": dict(sampler), "exact": settings}


results = {
    f"sampler n = {args.n}": measured(
        {**base, "mode": "sample", "sample": {**sampler, "n": args.n}}, args.seeds
    )
}
results["exact head, 512 positions"] = measured(exact(512, 0), 1)
for budget in args.budgets:
    for draws in args.draws:
        results[f"head {budget} + tail {draws}"] = measured(exact(budget, draws), args.seeds)

chat = chat_prompt(tokenizer, rows[0]["text"], answer.prefix)
ids = tokenizer(chat, return_tensors="pt", add_special_tokens=False)


def authors_loop():
    torch.manual_seed(0)
    for _ in range(args.n):
        with torch.inference_mode():
            model.generate(
                **ids, do_sample=True, pad_token_id=tokenizer.pad_token_id, max_new_tokens=10, **sampler
            )


loop = timed(authors_loop)
reference = results[f"sampler n = {args.n}"]
table = pd.DataFrame(results).T
# the sampler's time to reach each row's SD, over the row's time (rows without spread: no ratio)
equal_sd = reference["s_per_prompt"] * (reference["smd_sd"] / table["smd_sd"]) ** 2 / table["s_per_prompt"]
table["x_sampler_at_equal_sd"] = equal_sd.where(table["smd_sd"] > 0)
table["x_authors_loop_at_equal_sd"] = loop / reference["s_per_prompt"] * equal_sd.where(table["smd_sd"] > 0)
print(
    f"{len(rows)} purchase prompts, {args.seeds} seeds; authors' loop n = {args.n}: {loop:.2f} s per prompt"
)
print(table.to_string(float_format=lambda x: f"{x:.4g}"))

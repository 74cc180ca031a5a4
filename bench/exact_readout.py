"""The exact readout against sampling, in one run on the same prompts: time per prompt, and the SMD each
gives with the spread of the sampled SMD over sampler seeds (the exact SMD has none). References: the
project's batched sampler at the paper's n = 100, and the authors' loop of one `generate` call per sample
(timed on one prompt). Goal (issue 13): at least 5x faster than n = 100 sampling, 100x than the loop.

    .venv/bin/python bench/exact_readout.py [--prompts 16] [--seeds 10]   (about five minutes)
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
parser.add_argument("--seeds", type=int, default=10)
parser.add_argument("--n", type=int, default=100)
args = parser.parse_args()

model, tokenizer = embedded_model()
every, answer = purchase_prompts(64)  # the first variation's prompts; half of the chosen ones per group
rows = [
    row for race in ("White", "Black") for row in [r for r in every if r["race"] == race][: args.prompts // 2]
]
base = {"batch_size": 8, "use_prefix": True, "max_new_tokens": 10, "max_answer_chars": 200}
sampler = {"temperature": 0.6, "top_p": 0.9}
exact = {
    **base,
    "mode": "exact",
    "sample": sampler,
    "exact": {"epsilon": 0.01, "max_nodes": 512, "width": 32},
}
labels = pd.DataFrame(rows)[["prompt_id", "domain", "variation", "name", "race"]]


def smd(columns) -> float:
    answers = pd.DataFrame(columns).merge(labels, on="prompt_id")
    table = bias_table(answers, ("White", "Black"), resamples=100, permutations=1000)
    return float(table.loc[table["level"] == "variation", "smd"].iloc[0])


found = {}


def run_exact():
    found["exact"] = read_answers(model, tokenizer, rows, answer, exact)


def sampled(seed):
    settings = {**base, "mode": "sample", "sample": {**sampler, "n": args.n, "seed": seed}}
    return read_answers(model, tokenizer, rows, answer, settings)


exact_time = timed(run_exact)
exact_smd = smd(found["exact"])
unexplored = np.mean(found["exact"]["mass_unexplored"])
run_exact()
assert smd(found["exact"]) == exact_smd  # deterministic: the same SMD again
sample_times, sample_smds = [], []
for seed in range(args.seeds):
    sample_times.append(timed(lambda seed=seed: found.__setitem__("sample", sampled(seed))))
    sample_smds.append(smd(found["sample"]))
chat = chat_prompt(tokenizer, rows[0]["text"], answer.prefix)
ids = tokenizer(chat, return_tensors="pt", add_special_tokens=False)


def authors_loop():
    torch.manual_seed(0)
    for _ in range(args.n):
        with torch.inference_mode():
            model.generate(
                **ids, do_sample=True, pad_token_id=tokenizer.pad_token_id, max_new_tokens=10, **sampler
            )


loop_time = timed(authors_loop)
per_exact, per_sample = exact_time / len(rows), np.median(sample_times) / len(rows)
print(f"{len(rows)} purchase prompts; exact: epsilon 0.01 (mean unexplored mass {unexplored:.4f})")
print(
    f"exact readout:               {per_exact:7.2f} s per prompt, SMD {exact_smd:+.3f} (spread 0: deterministic)"
)
print(
    f"sampling n = {args.n} (batched):  {per_sample:7.2f} s per prompt, SMD {np.mean(sample_smds):+.3f} "
    f"(SD {np.std(sample_smds, ddof=1):.3f} over {args.seeds} seeds)"
)
print(f"authors' loop n = {args.n}:       {loop_time:7.2f} s per prompt")
print(f"exact vs sampling: {per_sample / per_exact:.2f}x faster (goal: at least 5x)")
print(f"exact vs the authors' loop: {loop_time / per_exact:.1f}x faster (goal: at least 100x)")

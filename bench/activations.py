"""Caching overhead: the activation cache (eager attention, hooks, per-prompt reductions) against a plain
forward over the same sequences and batches, measured in the same run. Goal: at most 1.5x. The attribution
pass (forward and backward through the expected readout) is reported against the same reference.

    .venv/bin/python bench/activations.py [--prompts 16] [--batch-size 8]
"""

import argparse

import torch
from common import MODEL, ROOT, embedded_model, purchase_prompts, timed

from biasprune.activations import attribution_batch, build_sequence, cache_batch
from biasprune.decoding import pad_left
from biasprune.grid import Candidates, format_value
from biasprune.models import load_model

parser = argparse.ArgumentParser()
parser.add_argument("--prompts", type=int, default=16)
parser.add_argument("--batch-size", type=int, default=8)
args = parser.parse_args()

plain_model, tokenizer = embedded_model()
eager_model, _ = load_model(ROOT / "resources" / "models" / MODEL, device="cpu", attn_implementation="eager")
rows, answer = purchase_prompts(args.prompts)
sequences = [build_sequence(tokenizer, row, format_value(100), answer.prefix) for row in rows]
batches = [sequences[i : i + args.batch_size] for i in range(0, len(sequences), args.batch_size)]
row_batches = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
candidates = Candidates.build(tokenizer, answer.grid, answer.prefix)


inputs = [pad_left([s.ids for s in batch], tokenizer.pad_token_id, "cpu") for batch in batches]


def plain():
    with torch.inference_mode():
        for batch in inputs:
            plain_model(**batch, use_cache=False)


def cache():
    for batch in batches:
        cache_batch(eager_model, tokenizer, batch, "all")


def attribution():
    for batch in row_batches:
        attribution_batch(eager_model, tokenizer, batch, candidates, answer.grid, answer.prefix)


plain(), cache()  # warm-up
reference = timed(plain, repeat=3)
cached = timed(cache, repeat=3)
attributed = timed(attribution, repeat=1)
tokens = sum(len(s.ids) for s in sequences)
print(f"{len(sequences)} prompts ({tokens} tokens), batches of {args.batch_size}")
print(f"plain forward (sdpa, no hooks): {reference:6.2f} s")
print(
    f"activation cache (eager, hooks): {cached:6.2f} s  -> overhead {cached / reference:.2f}x (goal: at most 1.5x)"
)
print(
    f"attribution (forward + backward through the expected readout): {attributed:6.2f} s -> {attributed / reference:.1f}x"
)

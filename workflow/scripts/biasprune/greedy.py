"""The authors' greedy head selection (method `heads/greedy_attention`): one head per step, the paper's name
attention (both groups' mean attention from answer positions onto the name, summed) re-measured on the
variation's prompts with every head chosen so far ablated (zeroed), the strongest remaining head chosen.

The result is a score table like any other method's: per variation and layer, `greedy_rank` = steps - the
step a head was chosen at (earlier = larger), NaN for heads never chosen, so the masks' top-K of it is the
greedy set of size K for every K up to `steps`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .ablation import Mask, masked
from .activations import baseline_answer, build_sequence, cache_batch
from .models import ModelAdapter
from .scores import score_rows
from .vocabulary import Setting, settings


def name_attention(model, tokenizer, sequences, races: Sequence[str], groups, batch_size: int) -> np.ndarray:
    """(layers, heads): the sum over groups of each group's mean name mass (the paper's head score)."""
    adapter = ModelAdapter.of(model)
    per_prompt = np.zeros((len(sequences), adapter.n_layers, adapter.n_heads))
    for start in range(0, len(sequences), batch_size):
        table = cache_batch(model, tokenizer, sequences[start : start + batch_size], "name_and_answer")
        table = table.filter(pc.equal(table.column("reduction"), "name_mass"))
        index = {prompt: start + i for i, prompt in enumerate(s.prompt_id for s in sequences[start:])}
        for row in table.to_pylist():
            per_prompt[index[row["prompt_id"]], row["layer"]] = row["values"]
    races = np.asarray(races)
    return sum(per_prompt[races == group].mean(0) for group in groups)


def greedy_order(
    model, tokenizer, sequences, races: Sequence[str], groups, steps: int, batch_size: int = 8
) -> list[tuple[int, int]]:
    """(layer, head) chosen at each step (model loaded with eager attention)."""
    adapter = ModelAdapter.of(model)
    chosen: list[tuple[int, int]] = []
    for _ in range(steps):
        pruned = {
            str(layer): torch.zeros(adapter.n_heads, dtype=torch.bool) for layer in range(adapter.n_layers)
        }
        for layer, head in chosen:
            pruned[str(layer)][head] = True
        with masked(model, Mask("heads", pruned, "zero"), "hooks"):
            scores = name_attention(model, tokenizer, sequences, races, groups, batch_size)
        for layer, head in chosen:
            scores[layer, head] = -np.inf
        layer, head = np.unravel_index(int(np.argmax(scores)), scores.shape)
        chosen.append((int(layer), int(head)))
    return chosen


def greedy_scores(
    model,
    tokenizer,
    prompts: Sequence[dict],
    answers: Sequence[dict],
    answer_spec,
    groups,
    steps: int,
    prefix: str,
    batch_size: int = 8,
    progress=None,
) -> pa.Table:
    """Score rows (SCORE_SCHEMA) of the greedy order per variation of one domain's prompts."""
    adapter = ModelAdapter.of(model)
    by_prompt: dict[str, list[dict]] = {}
    for row in answers:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    variations = list(dict.fromkeys(row["variation"] for row in prompts))
    records = []
    for variation in progress(variations, desc="greedy", unit="variation") if progress else variations:
        rows = [row for row in prompts if row["variation"] == variation]
        sequences = [
            build_sequence(
                tokenizer, row, baseline_answer(by_prompt[row["prompt_id"]], answer_spec.grid, prefix), prefix
            )
            for row in rows
        ]
        order = greedy_order(
            model, tokenizer, sequences, [row["race"] for row in rows], groups, steps, batch_size
        )
        ranks = np.full((adapter.n_layers, adapter.n_heads), np.nan)
        for step, (layer, head) in enumerate(order):
            ranks[layer, head] = steps - step
        records += [
            (variation, layer, "attn.hook_pattern", "", "greedy_rank", ranks[layer])
            for layer in range(adapter.n_layers)
        ]
    return score_rows(records)


def greedy_steps(n_heads_total: int, heads: dict) -> int:
    """Steps to run: the largest head count any configured setting asks for."""
    counts = [Setting.parse(setting).count(n_heads_total) for setting in settings("heads", heads)]
    return min(max(counts), n_heads_total)

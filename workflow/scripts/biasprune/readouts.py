"""The answers table: what a readout reads of a model's answers to one domain's prompts (sampled or greedy
decoding, the expected value over the candidate grid, or the exact distribution), one row per answer or
prompt."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import torch

from .decoding import decode, encode_shared_prefix, split_prefix
from .exact import TREE_ENDING, exact_distributions, tree_columns
from .grid import Candidates, expected_answer, grid_log_probs
from .parse import VALID_REASONS, in_range, parse_number
from .readout_modes import answer_prefix, readout
from .tokens import chat_prompt

ANSWER_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("sample", pa.int32()),
        ("text", pa.string()),  # the decoded continuation (null for the expected and exact readouts)
        ("value", pa.float64()),  # the number read; exact: the mean of the valid distribution (null: invalid)
        ("valid", pa.bool_()),
        (
            "reason",
            pa.string(),
        ),  # ok, hedged, empty, no_number, refusal, too_long, out_of_range, off_grid, ...
        ("entropy", pa.float64()),  # of the grid distribution (expected readout)
        ("grid_probs", pa.list_(pa.float32())),  # probability of each grid value (expected readout)
        ("coverage", pa.float64()),  # expected: the probability of every grid form, before renormalising
        # exact: the distribution of the answer's leading number (support and absolute probabilities), the
        # mass of answers that are not a number in range (per reason) and the mass left unexplored
        ("support", pa.list_(pa.float64())),
        ("probs", pa.list_(pa.float64())),
        ("invalid_reasons", pa.list_(pa.string())),
        ("invalid_probs", pa.list_(pa.float64())),
        ("mass_invalid", pa.float64()),
        ("mass_unexplored", pa.float64()),
        # exact with tail draws: the mass estimated by sampling (the head's unexplored mass), and the Monte
        # Carlo standard error of `value`
        ("mass_sampled", pa.float64()),
        ("value_se", pa.float64()),
        # exact, base answers: the explored tree (each run node's path, its nucleus, the valid endings), so
        # that attribution through the exact mean (activations) does not enumerate it again
        ("tree_nodes", pa.list_(pa.list_(pa.int32()))),
        ("tree_kept", pa.list_(pa.list_(pa.int32()))),
        ("tree_endings", pa.list_(TREE_ENDING)),
    ]
)
ANSWER_COLUMNS = tuple(ANSWER_SCHEMA.names)


def read_answers(
    model, tokenizer, prompts: Sequence[dict], answer, settings: dict, progress=None, keep_tree: bool = False
) -> dict:
    """Answers of `model` to the prompt rows of one domain, as columns of the answers table.

    `answer` is the domain's Answer spec; `settings` the readout config (mode, batch_size, max_new_tokens,
    use_prefix, max_answer_chars, sample: {n, temperature, top_p, seed}, exact: {epsilon, max_nodes, width,
    tail_draws, min_valid_mass}, expected: {min_coverage}).
    """
    mode, size = settings["mode"], settings["batch_size"]
    prefix = answer_prefix(settings, answer.prefix)
    prompt_part, _ = split_prefix(prefix)
    reading = _Reading(
        model,
        tokenizer,
        answer,
        settings,
        prompt_part,
        torch.Generator().manual_seed(settings.get("sample", {}).get("seed", 0)),
        keep_tree,
        Candidates.build(tokenizer, answer.grid, prefix) if readout(mode).grid else None,
    )
    columns = {name: [] for name in ANSWER_COLUMNS}
    batches = range(0, len(prompts), size)
    if progress:
        batches = progress(batches, desc=f"{mode} readout", unit="batch")
    for start in batches:
        rows = prompts[start : start + size]
        READERS[mode](
            columns, reading, rows, [chat_prompt(tokenizer, row["text"], prompt_part) for row in rows]
        )
    return columns


@dataclass(frozen=True)
class _Reading:
    """What every batch of one domain's reading shares: the model, the domain's answer spec, the readout's
    settings, the prefix text inside the prompt, the seeded generator (drawn in batch order) and the grid."""

    model: object
    tokenizer: object
    answer: object
    settings: dict
    prompt_part: str
    generator: torch.Generator
    keep_tree: bool
    candidates: Candidates | None


def _decoded_rows(columns, reading: _Reading, rows, chats) -> None:
    """The sample or greedy readout of a batch: n sampled answers (greedy: one at temperature 0) per prompt,
    each parsed after the pre-filled prefix and checked against the domain's range."""
    settings, sample = reading.settings, reading.settings.get("sample", {})
    sampled = settings["mode"] == "sample"
    texts = decode(
        reading.model,
        reading.tokenizer,
        chats,
        sample["n"] if sampled else 1,
        max_new_tokens=settings["max_new_tokens"],
        temperature=sample["temperature"] if sampled else 0.0,
        top_p=sample.get("top_p", 1.0),
        generator=reading.generator,
    )
    for row, answers in zip(rows, texts, strict=True):
        for index, text in enumerate(answers):
            parsed = in_range(
                parse_number(reading.prompt_part + text, settings["max_answer_chars"]), reading.answer.range
            )
            _append(
                columns,
                prompt_id=row["prompt_id"],
                sample=index,
                text=text,
                value=parsed.value,
                reason=parsed.reason,
            )


def _expected_rows(columns, reading: _Reading, rows, chats) -> None:
    """The expected readout of a batch: exp(E[log value]) over the grid at the sampler's temperature, the
    grid's coverage, and `off_grid` where the coverage is below `expected.min_coverage`."""
    model, tokenizer, settings, answer = reading.model, reading.tokenizer, reading.settings, reading.answer
    candidates = reading.candidates
    temperature = settings.get("sample", {}).get("temperature", 1.0)
    floor = settings.get("expected", {}).get("min_coverage", 0.0)
    with torch.inference_mode():
        batch = encode_shared_prefix(tokenizer, chats, model.device)
        log_probs, coverage = grid_log_probs(
            model, batch, candidates, len(answer.grid), temperature, with_coverage=True
        )
        values, entropy = expected_answer(log_probs, answer.grid)
    for row, value, spread, probs, covered in zip(
        rows, values.tolist(), entropy.tolist(), log_probs.exp(), coverage.exp().tolist(), strict=True
    ):
        # a degenerate grid distribution is reported, not stored as a number
        reason = "ok" if math.isfinite(value) else "undefined"
        if reason == "ok" and covered < floor:
            reason = "off_grid"
        _append(
            columns,
            prompt_id=row["prompt_id"],
            value=value if reason == "ok" else None,
            reason=reason,
            entropy=spread,
            grid_probs=probs.tolist(),
            coverage=covered,
        )


def _exact_rows(columns, reading: _Reading, rows, chats) -> None:
    """The exact readout of a batch: one row per prompt with its whole answer distribution."""
    model, tokenizer, settings, answer = reading.model, reading.tokenizer, reading.settings, reading.answer
    generator, keep_tree = reading.generator, reading.keep_tree
    sample, exact = settings.get("sample", {}), settings.get("exact", {})
    distributions = exact_distributions(
        model,
        tokenizer,
        chats,
        temperature=sample.get("temperature", 0.6),
        top_p=sample.get("top_p", 0.9),
        epsilon=exact.get("epsilon", 0.01),
        max_nodes=exact.get("max_nodes", 512),
        width=exact.get("width", 32),
        max_new_tokens=settings["max_new_tokens"],
        answer_range=answer.range,
        max_chars=settings["max_answer_chars"],
        tail_draws=exact.get("tail_draws", 64),
        generator=generator,
    )
    floor = exact.get("min_valid_mass", 0.0)
    for row, head in zip(rows, distributions, strict=True):
        found = head.estimated()
        support = sorted(found.values)
        mass = found.valid_mass
        if mass > 0 and mass >= floor:
            value, reason = sum(v * found.values[v] for v in support) / mass, "ok"
        else:
            value = None
            reason = max(found.invalid, key=found.invalid.get) if mass == 0 and found.invalid else "low_mass"
        reasons = sorted(found.invalid)
        _append(
            columns,
            prompt_id=row["prompt_id"],
            value=value,
            reason=reason,
            support=support,
            probs=[found.values[v] for v in support],
            invalid_reasons=reasons,
            invalid_probs=[found.invalid[r] for r in reasons],
            mass_invalid=found.invalid_mass,
            mass_unexplored=found.unexplored,
            mass_sampled=head.unexplored if head.tail else 0.0,
            value_se=head.mean_se() if value is not None else None,
            **(tree_columns(head) if keep_tree else {}),
        )


# How each readout of the registry (readout_modes.READOUTS) reads a batch.
READERS = {"expected": _expected_rows, "exact": _exact_rows, "sample": _decoded_rows, "greedy": _decoded_rows}


def _append(columns, **fields) -> None:
    """One answers row; `valid` follows from the reason, unset fields are null."""
    fields = {"sample": 0, "text": None, **fields, "valid": fields["reason"] in VALID_REASONS}
    for name in ANSWER_COLUMNS:
        columns[name].append(fields.get(name))

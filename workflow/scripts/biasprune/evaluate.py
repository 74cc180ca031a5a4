"""Evaluating masks: which conditions a job reads on which prompts, their random controls, and the damage.

A mask file holds every condition of one (unit, method, scope); rule `evaluate` reads one domain's prompts
under each condition that is evaluated there:
- `variation` `{d}/{v}` and `loo` `{d}/-{v}`: on variation v of d only (in-sample for `variation`, held out
  for `loo`);
- `domain` `{d}`: on every domain (in-sample on d itself: the paper's within-context result; the rest are
  transfers);
- `cross` `-{d}`: on d, the domain it was not selected on; with `cross_in_sample` also on the other domains.
Controls of a non-empty mask, all with its count per matrix or layer: `random` (uniform over the matrix or
layer) and `matched` (drawn from the mask's matched pool), rebuilt for every seed the manifest lists from a
seed derived from (condition, setting, control, seed), so every job that evaluates a condition draws the same
control; and `generic` (the top components of a group-blind score, stored in the mask file). An empty mask
has no controls (nothing to match).
Damage (rule `damage`) is the mean KL(base || pruned) of next-token distributions over every position of
the name-free neutral prompts.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import torch

from .ablation import Mask, masked
from .decoding import encode_left_padded
from .hooks import hooks
from .models import ModelAdapter
from .readouts import ANSWER_SCHEMA, read_answers
from .selection import random_like
from .tokens import chat_prompt

PRUNED = "pruned"
RANDOM = "random"
MATCHED = "matched"
GENERIC = "generic"
CONTROLS = (RANDOM, MATCHED, GENERIC)


@dataclass(frozen=True)
class Evaluation:
    """One mask (a condition's own, or a random control of it) read on some variations of one domain."""

    condition: str
    setting: str
    control: str  # pruned | random | matched | generic
    seed: int  # the manifest's seed of a random or matched control; -1 for the mask and its generic control
    variations: tuple[str, ...]
    in_sample: bool  # the evaluated prompts were among those the mask was selected on


def condition_domain(condition: str) -> str:
    """The domain a `variation`, `loo` or `domain` condition belongs to ('-d' for cross: d)."""
    return condition.lstrip("-").split("/")[0]


def _targets(condition: str, scope: str, domain: str, variations: Sequence[str], cross_in_sample: bool):
    """The variations of `domain` a condition is evaluated on ((), if none)."""
    if scope in ("variation", "loo"):
        owner, _, target = condition.partition("/")
        return (target.removeprefix("-"),) if owner == domain else ()
    if scope == "cross" and condition != f"-{domain}" and not cross_in_sample:
        return ()
    return tuple(variations)


def controls(manifest: dict, condition: str, setting: str) -> list[tuple[str, int]]:
    """(control, seed) of a condition's own mask and of each control evaluated beside it."""
    entry = manifest["conditions"][condition]
    if not sum(entry["counts"][setting].values()):
        return [(PRUNED, -1)]
    out = [(PRUNED, -1)] + [(RANDOM, seed) for seed in manifest["random_seeds"]]
    out += [(MATCHED, seed) for seed in manifest.get("matched_seeds", ())]
    if manifest.get("generic") and isinstance(entry.get("generic", {}).get(setting), int):
        out.append((GENERIC, -1))
    return out


def evaluations(
    manifest: dict, domain: str, variations: Sequence[str], cross_in_sample: bool = False
) -> list[Evaluation]:
    """Every mask the (scope of `manifest`, `domain`) job evaluates, its controls after it."""
    out = []
    for condition, entry in manifest["conditions"].items():
        targets = _targets(condition, manifest["scope"], domain, variations, cross_in_sample)
        if not targets:
            continue
        selected = set(entry["selection"].get(domain, ()))
        in_sample = any(v in selected for v in targets)
        for setting in manifest["settings"]:
            out += [
                Evaluation(condition, setting, control, seed, targets, in_sample)
                for control, seed in controls(manifest, condition, setting)
            ]
    return out


def random_seed(condition: str, setting: str, seed: int, control: str = RANDOM) -> int:
    """The generator seed of one random control: the same in every job, different across conditions."""
    key = f"{condition}|{setting}|{seed}" + ("" if control == RANDOM else f"|{control}")
    return zlib.crc32(key.encode())


def mask_of(evaluation, manifest: dict, masks, ablation: str = "zero", means=None) -> Mask:
    """The Mask an evaluation applies (its condition's, or the control drawn for it)."""
    condition, setting = evaluation.condition, evaluation.setting
    keys = masks[condition, setting]
    if evaluation.control == RANDOM:
        keys = random_like(keys, random_seed(condition, setting, evaluation.seed))
    elif evaluation.control == MATCHED:
        pool = masks.part(condition, setting, "pool")
        # Weights: the same count per matrix from its pool; units: the same total from the rank band.
        seed = random_seed(condition, setting, evaluation.seed, MATCHED)
        keys = random_like(keys, seed, pool, per_key=manifest["unit"] == "weights")
    elif evaluation.control == GENERIC:
        keys = masks.part(condition, setting, "generic")
    ablation = ablation if manifest["unit"] == "heads" else "zero"
    return Mask(manifest["unit"], keys, ablation, means or {})


def application(mask: Mask) -> str:
    """How `ablation.masked` applies a mask in evaluation: weight edits (no per-forward cost) except where
    only hooks can (mean ablation adds a vector)."""
    return "hooks" if mask.ablation == "mean" else "edit"


def _chats(tokenizer, texts: Sequence[str]) -> list[str]:
    return [chat_prompt(tokenizer, text) for text in texts]


@torch.inference_mode()
def head_means(model, tokenizer, texts: Sequence[str], batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Mean of each layer's attention output per head (attn.hook_z, n_heads * head_dim) over every token of
    the neutral prompts: what `mean` ablation puts in place of a pruned head."""
    adapter = ModelAdapter.of(model)
    sums, count = {}, 0

    def add(layer):
        def collect(z, layer=layer):
            kept = z[mask.bool()].float()
            sums[str(layer)] = sums.get(str(layer), 0) + kept.sum(0)

        return collect

    chats = _chats(tokenizer, texts)
    for start in range(0, len(chats), batch_size):
        batch = encode_left_padded(tokenizer, chats[start : start + batch_size], model.device)
        mask = batch["attention_mask"]
        with hooks(adapter, {f"blocks.{layer}.attn.hook_z": add(layer) for layer in range(adapter.n_layers)}):
            model(**batch, use_cache=False)
        count += int(mask.sum())
    return {layer: (total / count).to(model.dtype) for layer, total in sums.items()}


@torch.inference_mode()
def next_token_log_probs(model, tokenizer, texts: Sequence[str], batch_size: int = 8) -> list[torch.Tensor]:
    """Per neutral prompt, log-probabilities of the next token at every position (positions x vocab)."""
    chats, out = _chats(tokenizer, texts), []
    for start in range(0, len(chats), batch_size):
        batch = encode_left_padded(tokenizer, chats[start : start + batch_size], model.device)
        logits = model(**batch, use_cache=False).logits.float().log_softmax(-1)
        for row, keep in zip(logits, batch["attention_mask"].bool(), strict=True):
            out.append(row[keep].cpu())
    return out


def mean_kl(base: Sequence[torch.Tensor], pruned: Sequence[torch.Tensor]) -> float:
    """Mean over every position of every prompt of KL(base || pruned) (nats)."""
    total, positions = 0.0, 0
    for p, q in zip(base, pruned, strict=True):
        p, q = p.double(), q.double()  # float32 sums of near-equal terms can dip below zero
        total += float((p.exp() * (p - q)).sum())
        positions += p.shape[0]
    return total / positions


EVAL_SCHEMA = pa.schema(
    [
        ("condition", pa.string()),
        ("setting", pa.string()),
        ("control", pa.string()),  # pruned | random | matched | generic
        ("seed", pa.int32()),  # of a random or matched control; -1 for the mask and its generic control
        ("in_sample", pa.bool_()),
        ("n_pruned", pa.int64()),  # components the mask removes (0: the unpruned answers, reused)
        *(field for field in ANSWER_SCHEMA if field.name != "grid_probs"),
    ]
)


def evaluate_domain(
    model,
    tokenizer,
    manifest: dict,
    masks: dict,
    prompts: Sequence[dict],
    base: pa.Table,
    answer,
    readout: dict,
    cross_in_sample: bool = False,
    ablation: str = "zero",
    means: dict | None = None,
    progress=None,
) -> pa.Table:
    """Answers of one domain's prompts under every mask evaluated there (EVAL_SCHEMA).

    The model is loaded once; each mask is applied and removed around its readout. A mask that removes
    nothing (e.g. an empty intersection) reuses the unpruned answers `base` instead of recomputing them.
    """
    variations = list(dict.fromkeys(row["variation"] for row in prompts))
    base_rows = base.drop_columns(["grid_probs"]).to_pylist()
    base_by_prompt: dict[str, list[dict]] = {}
    for row in base_rows:
        base_by_prompt.setdefault(row["prompt_id"], []).append(row)
    plan = evaluations(manifest, prompts[0]["domain"], variations, cross_in_sample)
    if progress:
        plan = progress(plan, desc="masks", unit="mask")
    rows = []
    for evaluation in plan:
        mask = mask_of(evaluation, manifest, masks, ablation, means)
        chosen = [row for row in prompts if row["variation"] in evaluation.variations]
        label = {
            "condition": evaluation.condition,
            "setting": evaluation.setting,
            "control": evaluation.control,
            "seed": evaluation.seed,
            "in_sample": evaluation.in_sample,
            "n_pruned": mask.count(),
        }
        if mask.count() == 0:
            answers = [item for row in chosen for item in base_by_prompt[row["prompt_id"]]]
        else:
            with masked(model, mask, application(mask)):
                columns = read_answers(model, tokenizer, chosen, answer, readout)
            columns.pop("grid_probs")
            answers = [
                dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
            ]
        rows += [label | item for item in answers]
    return pa.Table.from_pylist(rows, schema=EVAL_SCHEMA)


DAMAGE_SCHEMA = pa.schema(
    [
        ("condition", pa.string()),
        ("setting", pa.string()),
        ("control", pa.string()),
        ("seed", pa.int32()),
        ("n_pruned", pa.int64()),
        ("kl", pa.float64()),  # mean KL(base || pruned) per neutral-prompt position, nats
    ]
)


def damage_table(
    model, tokenizer, manifest: dict, masks: dict, texts: Sequence[str], ablation="zero", means=None
) -> pa.Table:
    """Collateral damage of every mask of a file (and of its random controls) on the neutral prompts."""
    base = next_token_log_probs(model, tokenizer, texts)
    rows = []
    for condition in manifest["conditions"]:
        for setting in manifest["settings"]:
            for control, seed in controls(manifest, condition, setting):
                evaluation = Evaluation(condition, setting, control, seed, (), False)
                mask = mask_of(evaluation, manifest, masks, ablation, means)
                kl = 0.0
                if mask.count():
                    with masked(model, mask, application(mask)):
                        kl = mean_kl(base, next_token_log_probs(model, tokenizer, texts))
                rows.append(
                    {
                        "condition": condition,
                        "setting": setting,
                        "control": control,
                        "seed": seed,
                        "n_pruned": mask.count(),
                        "kl": kl,
                    }
                )
    return pa.Table.from_pylist(rows, schema=DAMAGE_SCHEMA)

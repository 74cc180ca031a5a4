"""Evaluating masks: which conditions a job reads on which prompts, and their random controls.

A mask file holds every condition of one (unit, method, scope); rule `evaluate` reads one domain's prompts
under each condition that is evaluated there, as its scope's registry entry says (`Scope.targets`):
- `variation` `{d}/{v}` and `loo` `{d}/-{v}`: on variation v of d only (in-sample for `variation`, held out
  for `loo`);
- `domain` `{d}`: on every domain (in-sample on d itself: the paper's within-context result; the rest are
  transfers);
- `cross` `-{d}`: on d, the domain it was not selected on; with `cross_in_sample` also on the other domains.
Controls of a non-empty mask, all with its count per matrix or layer: `random` (uniform over the matrix or
layer) and `matched` (drawn from the mask's matched pool), rebuilt for every seed the manifest lists from a
seed derived from (condition, setting, control, seed), so every job that evaluates a condition draws the same
control; and `generic` (the top components of a group-blind score, stored in the mask file). An empty mask
has no controls (nothing to match). A direction file (unit `directions`) stores its edits and their
controls, fitted when the masks were built (directions.py); they are read, not drawn, and applied by hooks
at the positions the manifest names. Damage (rule `damage`) is in damage.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from .ablation import Mask, masked
from .directions import Edit, edit_of, edited, name_tokens
from .folds import ALL_NAMES, evaluation_folds, fold_conditions, fold_key
from .readouts import ANSWER_SCHEMA, read_answers
from .selection import random_like, random_seed
from .vocabulary import GENERIC, MATCHED, PRUNED, RANDOM, Condition, scope_entry


@dataclass(frozen=True)
class Evaluation:
    """One mask (a condition's own, or a random control of it) read on some variations of one domain."""

    condition: str
    setting: str
    control: str  # pruned | random | matched | generic
    seed: int  # the manifest's seed of a random or matched control; -1 for the mask and its generic control
    variations: tuple[str, ...]
    in_sample: bool  # the evaluated prompts' context was among those the mask was selected on
    fold: str = ALL_NAMES  # the fold of names the mask held out (folds.py; "": none, all names selected it)
    names: frozenset[str] | None = None  # the names read (a fold's); None: every name

    @property
    def key(self) -> str:
        """The mask file's condition of the mask this evaluation applies."""
        return fold_key(self.condition, self.fold)


def _targets(condition: str, scope: str, domain: str, variations: Sequence[str], cross_in_sample: bool):
    """The variations of `domain` a condition is evaluated on ((), if none), as its scope's entry says."""
    return scope_entry(scope).targets(Condition.parse(condition, scope), domain, variations, cross_in_sample)


def controls(manifest: dict, condition: str, setting: str, fold: str = ALL_NAMES) -> list[tuple[str, int]]:
    """(control, seed) of a condition's own mask and of each control evaluated beside it. An empty mask has
    none, unless it is one fold's (its controls are the unpruned answers too, so that a cross-fitted control
    is read on the same names as its mask)."""
    entry = fold_conditions(manifest, fold)[condition]
    if not sum(entry["counts"][setting].values()) and not fold:
        return [(PRUNED, -1)]
    out = [(PRUNED, -1)] + [(RANDOM, seed) for seed in manifest["random_seeds"]]
    out += [(MATCHED, seed) for seed in manifest.get("matched_seeds", ())]
    if manifest.get("generic") and _generic_read(manifest, condition, setting, fold):
        out.append((GENERIC, -1))
    return out


def _generic(entry: dict, setting: str):
    return entry.get("generic", {}).get(setting)


def _generic_read(manifest: dict, condition: str, setting: str, fold: str) -> bool:
    """Whether a condition's generic control is evaluated: where it is stored; a fold's generic equal to its
    mask too when another fold's is stored, so that the control covers every fold's names."""
    value = _generic(fold_conditions(manifest, fold)[condition], setting)
    if isinstance(value, int) or not fold or value != "identical":
        return isinstance(value, int)
    return any(
        isinstance(_generic(part["conditions"][condition], setting), int)
        for part in manifest["folds"].values()
    )


def evaluations(
    manifest: dict, domain: str, variations: Sequence[str], cross_in_sample: bool = False
) -> list[Evaluation]:
    """Every mask the (scope of `manifest`, `domain`) job evaluates, its controls after it; of a cross-fitted
    manifest, each fold's masks on the fold's own names (which did not select them)."""
    out = []
    folds = evaluation_folds(manifest)
    for condition, entry in manifest["conditions"].items():
        targets = _targets(condition, manifest["scope"], domain, variations, cross_in_sample)
        if not targets:
            continue
        selected = set(entry["selection"].get(domain, ()))
        in_sample = any(v in selected for v in targets)
        for setting in manifest["settings"]:
            out += [
                Evaluation(condition, setting, control, seed, targets, in_sample, fold, names)
                for fold, names in folds.items()
                for control, seed in controls(manifest, condition, setting, fold)
            ]
    return out


def mask_of(evaluation, manifest: dict, masks, ablation: str = "zero", means=None) -> Mask:
    """The Mask an evaluation applies (its condition's, or the control drawn for it); for unit `directions`
    the Edit (its condition's or a stored control)."""
    condition, setting = evaluation.key, evaluation.setting
    if manifest["unit"] == "directions":
        return edit_of(masks, manifest, condition, setting, evaluation.control, evaluation.seed)
    keys = masks[condition, setting]
    if evaluation.control == RANDOM:
        keys = random_like(keys, random_seed(condition, setting, evaluation.seed))
    elif evaluation.control == MATCHED:
        pool = masks.part(condition, setting, "pool")
        # Weights: the same count per matrix from its pool; units: the same total from the rank band.
        seed = random_seed(condition, setting, evaluation.seed, MATCHED)
        keys = random_like(keys, seed, pool, per_key=manifest["unit"] == "weights")
    elif evaluation.control == GENERIC:
        entry = fold_conditions(manifest, evaluation.fold)[evaluation.condition]
        # equal to the mask in this fold (not stored): the mask itself
        same = _generic(entry, setting) == "identical"
        keys = masks[condition, setting] if same else masks.part(condition, setting, "generic")
    ablation = ablation if manifest["unit"] == "heads" else "zero"
    return Mask(manifest["unit"], keys, ablation, means or {})


def application(mask: Mask) -> str:
    """How `ablation.masked` applies a mask in evaluation: weight edits (no per-forward cost) except where
    only hooks can (mean ablation adds a vector)."""
    return "hooks" if mask.ablation == "mean" else "edit"


def applied(model, mask: Mask | Edit, names=()):
    """The context that applies a mask (`ablation.masked`) or a direction edit (`directions.edited`, at the
    positions it names; `names`: the prompts' name tokens, which mark `from_name`)."""
    if isinstance(mask, Edit):
        return edited(model, mask, names)
    return masked(model, mask, application(mask))


EVAL_SCHEMA = pa.schema(
    [
        ("condition", pa.string()),
        ("setting", pa.string()),
        ("control", pa.string()),  # pruned | random | matched | generic
        ("seed", pa.int32()),  # of a random or matched control; -1 for the mask and its generic control
        ("in_sample", pa.bool_()),
        ("fold", pa.string()),  # the fold the mask held out: the name's ("": all names selected the mask)
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
    names = name_tokens(tokenizer, prompts) if manifest["unit"] == "directions" else ()
    if progress:
        plan = progress(plan, desc="masks", unit="mask")
    rows = []
    for evaluation in plan:
        mask = mask_of(evaluation, manifest, masks, ablation, means)
        chosen = [
            row
            for row in prompts
            if row["variation"] in evaluation.variations
            and (evaluation.names is None or row["name"] in evaluation.names)
        ]
        label = {
            "condition": evaluation.condition,
            "setting": evaluation.setting,
            "control": evaluation.control,
            "seed": evaluation.seed,
            "in_sample": evaluation.in_sample,
            "fold": evaluation.fold,
            "n_pruned": mask.count(),
        }
        if mask.count() == 0:
            answers = [item for row in chosen for item in base_by_prompt[row["prompt_id"]]]
        else:
            with applied(model, mask, names):
                columns = read_answers(model, tokenizer, chosen, answer, readout)
            columns.pop("grid_probs")
            answers = [
                dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
            ]
        rows += [label | item for item in answers]
    return pa.Table.from_pylist(rows, schema=EVAL_SCHEMA)

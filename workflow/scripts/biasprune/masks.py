"""Masks from scores: what each condition prunes, at every scope, stored with a manifest.

Conditions (names inside a mask file):
- scope `variation`: `{domain}/{variation}`, selected on that variation's prompts;
- scope `loo`: `{domain}/-{variation}`, selected on the domain's other variations (the paper's
  within-context generalisation; domains with one variation have none);
- scope `domain`: `{domain}`, selected on all of the domain's variations (the paper's "common" set);
- scope `cross`: `-{domain}`, selected on every variation of every other domain. A `domain` mask
  evaluated on another domain is the one-domain transfer.
Several variations are combined by the unit's `common` rule: `intersection` (the paper's weights: selected
in every variation), `majority` (in at least half) or, for heads, `frequency` (the authors': the K heads most
frequent across the variations' top-K lists, ties broken by the summed score).
Each condition holds one mask per setting (a tau pair and direction for weights, a fraction of units, a
share of heads), and beside it two controls: its matched `pool` (weights: entries outside the mask with the
mask's profile of the selected group's Wanda score, `selection.score_matched`; units: the 2K units ranked
just below the mask) and its `generic`
control (as many components by a group-blind score: pooled Wanda, pooled attention mass; omitted where it
equals the mask, as for the paper's head score, which is already the sum over both groups). Random draws
are not stored: `selection.random_like(mask, seed[, pool])` rebuilds them for every seed the manifest lists.

Storage: each mask of one matrix (or layer) is written to disk as soon as it is made (`bits.TensorWriter`), so
the job's memory holds one matrix's candidates, never a file; it is stored as sorted indices where they take
fewer bytes than packed bits (sparse masks) and as packed bits otherwise (`encode`); the manifest counts
both per condition and setting. A job that applies one condition reads only that condition's tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .bits import encode, encoding, total
from .errors import ConfigError
from .folds import ALL_NAMES, fold_key
from .io import config_hash
from .methods import method as registry_method
from .models import LINEAR_INPUTS, LINEARS, ModelAdapter
from .selection import (
    intersect,
    majority,
    most_frequent,
    next_band,
    score_matched,
    top_k,
    top_like,
    wanda_set_difference,
)
from .vocabulary import K, Setting, scope_entry, scope_selections, settings


def _vectors(scores: pd.DataFrame, statistic: str, group: str = "") -> dict[str, dict[str, torch.Tensor]]:
    rows = scores[(scores["statistic"] == statistic) & (scores["group"] == group)]
    out: dict[str, dict[str, torch.Tensor]] = {}
    for row in rows.itertuples():
        out.setdefault(row.variation, {})[str(row.layer)] = torch.tensor(np.asarray(row.values, np.float32))
    return out


def unit_rankings(
    unit: str, method: str, domain: str, scores: pd.DataFrame, smds: pd.DataFrame | None, statistic: str
):
    """{variation: {layer: score}} where a larger score means 'prune first' (the registry's ranking of the
    method; `statistic` is the configured one, for methods that have none of their own; `smds`: the baseline
    SMD of each variation, `metrics.variation_smds`, read by methods ranked against the bias)."""
    entry = registry_method(unit, method)
    values = _vectors(scores, entry.statistic or statistic)
    if entry.ranking == "abs":
        return {v: {k: x.abs() for k, x in layers.items()} for v, layers in values.items()}
    if entry.ranking == "against_bias":
        smd = smds[smds["domain"] == domain].set_index("variation")["smd"]
        # Predicted reduction of |SMD| when the unit is zeroed: the effect pointing against the bias.
        return {
            v: {k: -x * float(np.sign(smd.get(v, np.nan))) for k, x in layers.items()}
            for v, layers in values.items()
        }
    return values


UNIT_NOUNS = {"neurons": "MLP units", "heads": "query heads"}


def select_units(ranking: dict[str, torch.Tensor], unit: str, setting: str) -> dict[str, torch.Tensor]:
    """The top units of one setting: a share of all units (at least one) or a count `k`."""
    total = sum(x.numel() for x in ranking.values())
    chosen = Setting.parse(setting)
    count = chosen.count(total)
    if chosen.kind == K and count > total:
        raise ConfigError(
            "config", f"masks.{unit}.k", f"at most {total} (the model's {UNIT_NOUNS[unit]})", count
        )
    return top_k(ranking, count)


def _blind(unit: str, method: str, scores: pd.DataFrame, groups, statistic: str):
    """{variation: {layer: group-blind score}} for the generic control (None where a method has none): the
    pooled attention mass (the paper's `sum`), the mean activation or effect over both groups."""
    entry = registry_method(unit, method)
    if entry.blind_pooled:
        return _vectors(scores, entry.blind) or None
    per_group = [_vectors(scores, entry.blind, group) for group in groups] if entry.blind else [{}, {}]
    if not per_group[0] or not per_group[1]:
        return None
    return {
        v: {k: ((per_group[0][v][k] + per_group[1][v][k]) / 2).abs() for k in layers}
        for v, layers in per_group[0].items()
    }


def _norms(scores: pd.DataFrame) -> dict[tuple, torch.Tensor]:
    """{(variation, layer, site, group): ||X_j||} of a weights/wanda score table."""
    rows = scores[scores["statistic"] == "norm"]
    return {
        (r.variation, r.layer, r.target, r.group): torch.tensor(np.asarray(r.values, np.float32))
        for r in rows.itertuples()
    }


@dataclass(frozen=True)
class Candidate:
    """What one variation contributes to a condition: its mask, its ranking (units), a group-blind score (the
    generic control) and, for weights, the selected group's score (what the matched control matches)."""

    mask: dict[str, torch.Tensor]
    ranking: dict[str, torch.Tensor] | None = None
    blind: dict[str, torch.Tensor] | None = None
    # weights: |W| of the matrix (one tensor shared by every variation); `blind` and `select` are then the
    # per-column factors that multiply it, so a variation holds vectors, not matrices of scores
    scale: dict[str, torch.Tensor] | None = None
    select: dict[str, torch.Tensor] | None = None


def weight_candidate(
    weight, magnitude, norms: dict, variation: str, layer: int, linear: str, groups, setting: str
):
    """The paper's prune set of one matrix (top-tau of one group's Wanda score minus top-tau of the other's),
    the group-blind Wanda score |W_ij| * ||X_j|| over both groups' inputs and the selected group's own (each
    as its column factor ||X_j||, with `magnitude` = |W| as the shared scale)."""
    tau = Setting.parse(setting)
    tau_select, tau_protect = float(tau.value), float(tau.protect)
    reference, focal = groups
    chosen, protected = (focal, reference) if tau.select == "focal" else (reference, focal)
    site, key = LINEAR_INPUTS[linear], f"{layer}.{linear}"
    select, protect = norms[variation, layer, site, chosen], norms[variation, layer, site, protected]
    mask = wanda_set_difference(weight, select, protect, tau_select, tau_protect)
    blind = (select.square() + protect.square()).sqrt()
    return Candidate({key: mask}, None, {key: blind}, {key: magnitude}, {key: select})


def _sum(parts: Sequence[dict[str, torch.Tensor] | None]) -> dict[str, torch.Tensor] | None:
    if any(part is None for part in parts):
        return None
    return {key: sum(part[key].double() for part in parts) for key in parts[0]}


RULES = {"intersection": intersect, "majority": majority}


def combine(
    candidates: Sequence[Candidate], rule: str, matched: bool = True
) -> tuple[dict, dict | None, dict | None]:
    """(mask, matched pool, generic control) of a condition selected on these variations' candidates.

    One candidate: its own mask. Several: the configured rule (intersection, majority, or for units the K
    most frequent, ties by summed score). The matched pool of weights holds entries outside the mask with its
    profile of the selected group's Wanda score, summed over the variations (`score_matched`); of units, the
    band ranked just below the mask by the summed score. `matched` False: no weights pool (None), where no
    matched control is evaluated (it costs a pass over every matrix)."""
    masks = [c.mask for c in candidates]
    ranking = _sum([c.ranking for c in candidates])
    if len(masks) == 1:
        mask = masks[0]
    elif rule == "frequency":
        mask = most_frequent(masks, ranking, int(sum(int(v.sum()) for v in masks[0].values())))
    else:
        mask = RULES[rule](masks)
    scale = candidates[0].scale
    blind = _sum([c.blind for c in candidates])
    if scale is not None:  # weights: sum over v of |W| * f_v = |W| * sum of f_v
        pool = None
        if matched:
            select = _sum([c.select for c in candidates])
            pool = {key: score_matched(mask[key], scale[key] * f[None, :], key) for key, f in select.items()}
        blind = {key: scale[key] * value[None, :] for key, value in blind.items()}
    else:
        pool = next_band(mask, ranking)
    return mask, pool, None if blind is None else top_like(mask, blind)


def _count(mask: dict | None) -> int:
    return total(mask) if mask else 0


def build_masks(
    unit: str,
    method: str,
    scope: str,
    scores: dict[str, pd.DataFrame],
    parameters: dict,
    groups: Sequence[str],
    out,
    smds: pd.DataFrame | None = None,
    model=None,
) -> dict:
    """Every condition of one scope for one unit and method, with each condition's matched pool and generic
    control: each stored tensor is handed to `out.add(name, tensor)` (an `bits.TensorWriter`) as it is made;
    returns the manifest. Weights pools are made only where matched controls run (`matched_seeds` > 0).

    Weight masks are built one matrix at a time (selection is independent per matrix), so memory holds one
    matrix's candidates for every variation, never a whole model's nor a file's.
    """
    if unit == "directions":  # fitted edits of the residual stream, not a choice of components
        from .directions import build_edits

        tensors, manifest = build_edits(method, scope, scores, parameters, groups)
        # the layers edited are stored like every mask; the edits as they are
        for name, value in tensors.items():
            out.add(name, encode(value) if value.dtype == torch.bool else value)
        manifest["config_hash"] = config_hash({"unit": unit, "method": method, "scope": scope, **parameters})
        return manifest
    conditions, shapes, stored = {}, {}, {"bits": 0, "indices": 0}
    rule = parameters.get("common", "intersection")
    matched = parameters.get("matched_seeds", 0) > 0
    variations = {domain: list(dict.fromkeys(table["variation"])) for domain, table in scores.items()}
    selections = scope_selections(scope, variations)

    def record(setting: str, candidates: dict[tuple[str, str], Candidate]) -> None:
        for name, selection in selections.items():
            chosen = [candidates[d, v] for d, names in selection.items() for v in names]
            mask, pool, generic = combine(chosen, rule, matched)
            entry = conditions.setdefault(
                name, {"selection": selection, "counts": {}, "pool": {}, "generic": {}, "stored": {}}
            )
            entry["counts"].setdefault(setting, {}).update({key: int(v.sum()) for key, v in mask.items()})
            entry["pool"][setting] = entry["pool"].get(setting, 0) + _count(pool)
            # A unit mask is built in one call: a generic control equal to it is recorded, not evaluated.
            same = (
                unit != "weights"
                and generic is not None
                and all(torch.equal(generic[k], mask[k]) for k in mask)
            )
            kept = generic is not None and not same
            entry["generic"][setting] = (
                entry["generic"].get(setting, 0) + _count(generic)
                if kept
                else ("identical" if same else None)
            )
            shapes.update({key: list(value.shape) for key, value in mask.items()})
            parts = {"": mask} | ({"|pool": pool} if pool else {}) | ({"|generic": generic} if kept else {})
            kinds = entry["stored"].setdefault(setting, {"bits": 0, "indices": 0})
            for suffix, part in parts.items():
                for key, value in part.items():
                    encoded = encode(value)
                    kinds[encoding(encoded)] += 1
                    stored[encoding(encoded)] += 1
                    out.add(f"{name}|{setting}|{key}{suffix}", encoded)

    for setting in settings(unit, parameters):
        if unit != "weights":
            statistic = parameters.get("statistic", "sum")
            candidates = {}
            for domain, table in scores.items():
                rankings = unit_rankings(unit, method, domain, table, smds, statistic)
                blind = _blind(unit, method, table, groups, statistic)
                for v, ranking in rankings.items():
                    candidates[domain, v] = Candidate(
                        select_units(ranking, unit, setting), ranking, blind[v] if blind else None
                    )
            record(setting, candidates)
            continue
        adapter = ModelAdapter.of(model)
        norms = {domain: _norms(table) for domain, table in scores.items()}
        for layer in range(adapter.n_layers):
            for linear in LINEARS:
                weight = adapter.linear(layer, linear).weight.detach()
                magnitude = weight.abs().float()
                candidates = {
                    (domain, v): weight_candidate(
                        weight, magnitude, norms[domain], v, layer, linear, groups, setting
                    )
                    for domain, names in variations.items()
                    for v in names
                }
                record(setting, candidates)
    manifest = {
        "unit": unit,
        "method": method,
        "scope": scope,
        "common": rule if scope_entry(scope).combines else "single",
        "groups": list(groups),
        "settings": settings(unit, parameters),
        "random_seeds": list(range(parameters["random_seeds"])),
        "matched_seeds": list(range(parameters.get("matched_seeds", 0))),
        "generic": bool(parameters.get("generic", False)),
        "conditions": conditions,
        "shapes": shapes,
        "stored": stored,  # tensors stored as packed bits and as sorted indices (`encode`)
        "config_hash": config_hash({"unit": unit, "method": method, "scope": scope, **parameters}),
    }
    return manifest


class _FoldWriter:
    """Hands a fold's tensors to the writer under the fold's conditions (`folds.fold_key`)."""

    def __init__(self, out, fold: str):
        self.out, self.fold = out, fold

    def add(self, name: str, tensor) -> None:
        condition, rest = name.split("|", 1)
        self.out.add(f"{fold_key(condition, self.fold)}|{rest}", tensor)


def build_fold_masks(
    unit: str,
    method: str,
    scope: str,
    scores: dict[str, pd.DataFrame],
    parameters: dict,
    groups: Sequence[str],
    out,
    folds: Mapping[str, Sequence[str]],
    smds: Mapping[str, pd.DataFrame] | None = None,
    model=None,
) -> dict:
    """`build_masks` on all names (the manifest's `conditions`) and per fold on the names it does not hold out
    (its `folds`: the names a fold holds out and evaluates, and its conditions), from score tables with a
    `fold` column (folds.per_fold); `smds`: {fold: the SMDs its masks read} for methods ranked against the
    bias."""

    def built(fold: str, writer) -> dict:
        tables = {domain: table[table["fold"] == fold] for domain, table in scores.items()}
        signs = smds[fold] if smds is not None else None
        return build_masks(unit, method, scope, tables, parameters, groups, writer, signs, model)

    manifest = built(ALL_NAMES, out)
    manifest["folds"] = {}
    for fold, names in folds.items():
        part = built(fold, _FoldWriter(out, fold))
        manifest["folds"][fold] = {"names": list(names), "conditions": part["conditions"]}
        for kind, count in part.get("stored", {}).items():
            manifest["stored"][kind] += count
    return manifest

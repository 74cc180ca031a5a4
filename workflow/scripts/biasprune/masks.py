"""Masks from scores: what each condition prunes, at every scope, stored as packed bits with a manifest.

Conditions (names inside a mask file):
- scope `variation`: `{domain}/{variation}`, selected on that variation's prompts;
- scope `loo`: `{domain}/-{variation}`, the intersection of the domain's other variations' masks (the
  paper's within-context generalisation; domains with one variation have none);
- scope `domain`: `{domain}`, the intersection over the domain's variations (the paper's "common" set);
- scope `cross`: `-{domain}`, the intersection of every other domain's `domain` mask (the pool of all
  domains but the evaluated one). A `domain` mask evaluated on another domain is the one-domain transfer.
Each condition holds one mask per setting (a tau pair and direction for weights, a fraction of units, a
share of heads). Random controls are not stored: `selection.random_like(mask, seed)` rebuilds them from the
counts for every seed the manifest lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .errors import ConfigError
from .io import config_hash
from .models import LINEAR_INPUTS, LINEARS, ModelAdapter
from .selection import intersect, top_k, wanda_set_difference

SCOPES = ("variation", "loo", "domain", "cross")


def settings(unit: str, parameters: dict) -> list[str]:
    """Names of the masks each condition holds, e.g. 'tau=0.15,0.15;select=focal' or 'fraction=0.01'."""
    if unit == "weights":
        return [f"tau={a},{b};select={d}" for a, b in parameters["tau"] for d in parameters["select"]]
    shares = parameters.get("fraction" if unit == "neurons" else "share", ())
    name = "fraction" if unit == "neurons" else "share"
    return [f"{name}={value}" for value in shares] + [f"k={count}" for count in parameters.get("k", ())]


def _parse(setting: str) -> dict[str, str]:
    return dict(part.split("=") for part in setting.split(";"))


def _vectors(scores: pd.DataFrame, statistic: str, group: str = "") -> dict[str, dict[str, torch.Tensor]]:
    rows = scores[(scores["statistic"] == statistic) & (scores["group"] == group)]
    out: dict[str, dict[str, torch.Tensor]] = {}
    for row in rows.itertuples():
        out.setdefault(row.variation, {})[str(row.layer)] = torch.tensor(np.asarray(row.values, np.float32))
    return out


def unit_rankings(
    unit: str, method: str, domain: str, scores: pd.DataFrame, baseline: pd.DataFrame, statistic: str
):
    """{variation: {layer: score}} where a larger score means 'prune first'."""
    if method == "attribution":
        effects = _vectors(scores, "smd_effect")
        smd = baseline[(baseline["level"] == "variation") & (baseline["domain"] == domain)].set_index(
            "variation"
        )["smd"]
        # Predicted reduction of |SMD| when the unit is zeroed: the effect pointing against the bias.
        return {
            v: {k: -x * float(np.sign(smd.get(v, np.nan))) for k, x in layers.items()}
            for v, layers in effects.items()
        }
    if method == "greedy_attention":
        return _vectors(scores, "greedy_rank")
    name = "diff" if method == "activation" else statistic
    values = _vectors(scores, name)
    if name == "diff":
        values = {v: {k: x.abs() for k, x in layers.items()} for v, layers in values.items()}
    return values


UNIT_NOUNS = {"neurons": "MLP units", "heads": "query heads"}


def select_units(ranking: dict[str, torch.Tensor], unit: str, setting: str) -> dict[str, torch.Tensor]:
    """The top units of one setting: a share of all units (at least one) or a count `k`."""
    total = sum(x.numel() for x in ranking.values())
    ((name, value),) = _parse(setting).items()
    if name == "k":
        if int(value) > total:
            raise ConfigError(
                "config", f"masks.{unit}.k", f"at most {total} (the model's {UNIT_NOUNS[unit]})", int(value)
            )
        return top_k(ranking, int(value))
    return top_k(ranking, max(1, round(float(value) * total)))


def _norms(scores: pd.DataFrame) -> dict[tuple, torch.Tensor]:
    """{(variation, layer, site, group): ||X_j||} of a weights/wanda score table."""
    rows = scores[scores["statistic"] == "norm"]
    return {
        (r.variation, r.layer, r.target, r.group): torch.tensor(np.asarray(r.values, np.float32))
        for r in rows.itertuples()
    }


def select_weights(weight, norms: dict, variation: str, layer: int, linear: str, groups, setting: str):
    """The paper's prune set of one matrix: top-tau of one group's Wanda score minus top-tau of the other's."""
    parts = _parse(setting)
    tau_select, tau_protect = (float(x) for x in parts["tau"].split(","))
    reference, focal = groups
    chosen, protected = (focal, reference) if parts["select"] == "focal" else (reference, focal)
    site = LINEAR_INPUTS[linear]
    return wanda_set_difference(
        weight,
        norms[variation, layer, site, chosen],
        norms[variation, layer, site, protected],
        tau_select,
        tau_protect,
    )


def scope_conditions(scope: str, per_variation: dict[str, dict[str, dict]]) -> dict[str, tuple[dict, dict]]:
    """{condition: (selection {domain: [variations]}, mask)} for one setting; per_variation[domain][variation]."""
    domains = {d: intersect(v.values()) for d, v in per_variation.items()}
    out = {}
    for domain, variations in per_variation.items():
        if scope == "variation":
            out |= {f"{domain}/{v}": ({domain: [v]}, m) for v, m in variations.items()}
        elif scope == "loo" and len(variations) > 1:
            for held in variations:
                rest = [v for v in variations if v != held]
                out[f"{domain}/-{held}"] = ({domain: rest}, intersect(variations[v] for v in rest))
        elif scope == "domain":
            out[domain] = ({domain: list(variations)}, domains[domain])
        elif scope == "cross" and len(per_variation) > 1:
            others = [d for d in per_variation if d != domain]
            out[f"-{domain}"] = (
                {d: list(per_variation[d]) for d in others},
                intersect(domains[d] for d in others),
            )
    return out


def pack(mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.packbits(value.numpy().ravel())) for key, value in mask.items()}


def unpack(packed: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    count = int(np.prod(shape))
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=count).astype(bool).reshape(shape))


def check_shapes(manifest: dict, model, file) -> None:
    """A mask file made for another model is refused with one line."""
    adapter = ModelAdapter.of(model)
    for key, shape in manifest["shapes"].items():
        if manifest["unit"] == "weights":
            layer, linear = key.split(".")
            expected = list(adapter.linear(int(layer), linear).weight.shape)
        else:
            expected = [adapter.d_mlp if manifest["unit"] == "neurons" else adapter.n_heads]
        if list(shape) != expected:
            raise ConfigError(file, f"shapes.{key}", f"the model's shape {expected}", list(shape))


def build_masks(
    unit: str,
    method: str,
    scope: str,
    scores: dict[str, pd.DataFrame],
    parameters: dict,
    groups: Sequence[str],
    baseline: pd.DataFrame | None = None,
    model=None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Every condition of one scope for one unit and method: packed tensors and the manifest.

    Weight masks are built one matrix at a time (selection is independent per matrix), so memory holds one
    matrix's masks for every variation, never a whole model's.
    """
    tensors, conditions, shapes = {}, {}, {}

    def record(setting: str, per_variation: dict) -> None:
        for name, (selection, mask) in scope_conditions(scope, per_variation).items():
            entry = conditions.setdefault(name, {"selection": selection, "counts": {}})
            entry["counts"].setdefault(setting, {}).update(
                {key: int(value.sum()) for key, value in mask.items()}
            )
            shapes.update({key: list(value.shape) for key, value in mask.items()})
            tensors.update({f"{name}|{setting}|{key}": value for key, value in pack(mask).items()})

    for setting in settings(unit, parameters):
        if unit != "weights":
            statistic = parameters.get("statistic", "sum")
            per_variation = {}
            for domain, table in scores.items():
                rankings = unit_rankings(unit, method, domain, table, baseline, statistic)
                per_variation[domain] = {v: select_units(r, unit, setting) for v, r in rankings.items()}
            record(setting, per_variation)
            continue
        adapter = ModelAdapter.of(model)
        norms = {domain: _norms(table) for domain, table in scores.items()}
        variations = {domain: list(dict.fromkeys(table["variation"])) for domain, table in scores.items()}
        for layer in range(adapter.n_layers):
            for linear in LINEARS:
                weight, key = adapter.linear(layer, linear).weight.detach(), f"{layer}.{linear}"
                per_variation = {
                    domain: {
                        v: {key: select_weights(weight, norms[domain], v, layer, linear, groups, setting)}
                        for v in names
                    }
                    for domain, names in variations.items()
                }
                record(setting, per_variation)
    manifest = {
        "unit": unit,
        "method": method,
        "scope": scope,
        "groups": list(groups),
        "settings": settings(unit, parameters),
        "random_seeds": list(range(parameters["random_seeds"])),
        "conditions": conditions,
        "shapes": shapes,
        "config_hash": config_hash({"unit": unit, "method": method, "scope": scope, **parameters}),
    }
    return tensors, manifest


class MaskFile(Mapping):
    """{(condition, setting): {key: bool tensor}} of a mask file, unpacked on access (a weights file holds
    a model-sized mask per condition: a job unpacks only the ones it applies)."""

    def __init__(self, path, manifest: dict):
        from safetensors import safe_open

        self._file = safe_open(str(path), framework="pt")
        self._shapes = manifest["shapes"]
        self._names: dict[tuple[str, str], list[str]] = {}
        for name in self._file.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
            condition, setting, _ = name.split("|")
            self._names.setdefault((condition, setting), []).append(name)

    def __getitem__(self, item: tuple[str, str]) -> dict[str, torch.Tensor]:
        return {
            name.split("|")[2]: unpack(self._file.get_tensor(name), self._shapes[name.split("|")[2]])
            for name in self._names[item]
        }

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def load_masks(path, model=None) -> tuple[dict, MaskFile]:
    """The manifest and the masks of a mask file (checked against `model`'s shapes when given)."""
    from pathlib import Path

    path = Path(path)
    manifest = json.loads(path.with_suffix(".json").read_text())
    if model is not None:
        check_shapes(manifest, model, path.with_suffix(".json"))
    return manifest, MaskFile(path, manifest)


def export_pruned(model_dir, mask_file, condition: str, setting: str, out, ablation: str = "zero") -> dict:
    """Save the model with one mask's components removed (weights edited) as a plain transformers folder."""
    from pathlib import Path

    from .io import atomic_path
    from .masking import Mask, masked
    from .models import load_model

    model, tokenizer = load_model(model_dir, device="cpu", dtype="float32")
    manifest, masks = load_masks(mask_file, model)
    if (condition, setting) not in masks:
        available = sorted({f"{c} [{s}]" for c, s in masks})
        raise ConfigError(
            "config", "export.condition/setting", f"one of {available[:12]}", f"{condition} [{setting}]"
        )
    mask = Mask(manifest["unit"], masks[condition, setting], ablation)
    record = {key: manifest[key] for key in ("unit", "method", "scope")} | {
        "condition": condition,
        "setting": setting,
        "ablation": ablation,
        "pruned": mask.count(),
        "source": str(model_dir),
    }
    with atomic_path(out, directory=True) as tmp, masked(model, mask, "edit"):
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "biasprune-pruning.json").write_text(json.dumps(record, indent=2))
    return record

"""Directions: linear edits of the residual stream, fitted per layer on the selection prompts, the unit that
competes with pruned components.

An edit of residual layer l (0..n_layers: the input of block l, or for n_layers the final residual) replaces
each edited position's residual x by

    x' = x - ((x - bias) @ right.T) @ left.T          left: d x k, right: k x d, bias: d

fitted on the residuals of the selection prompts (scores of unit `directions`: one vector per prompt at the
last name token or the answer position) with the focal group as the concept:
- `mean_difference`, affine concept editing (ACE; Marks & Tegmark 2023; Karvonen & Marks 2025): u is the unit
  difference of the two groups' mean residuals, left = u, right = u^T, bias = the midpoint of the two means,
  so each position's component along u is replaced by the midpoint of the two groups' projections;
- `leace`, LEACE (Belrose et al. 2023): the eraser `concept_erasure.LeaceFitter` fits with its defaults
  (covariance shrinkage, the trace constraint) on the residuals and the 0/1 focal label; its proj_left,
  proj_right and bias are left, right and bias, i.e. the eraser applied as the package applies it.

Which layers a condition edits is its setting (`layers=all`, or the n layers whose edit separates the groups
best on the selection prompts: |SMD| of the projections onto the edit's read direction). Where (config
`masks.directions.positions`): `from_name`, every position from the first token of the name on (and every
position a forward adds after a prompt), or `all`.

Controls, fitted here and stored in the mask file beside the edit (their size needs the selection prompts):
- `random` seed s: per edited layer a direction r uniform on the sphere, projected out through the selection
  prompts' mean (left = r, right = r^T, bias = mean);
- `matched` seed s: the same kind of direction scaled so that its mean displacement |x' - x| on the selection
  prompts equals the edit's (a random edit at matched norm);
- `generic`: the same method fitted with the group labels shuffled over the selection prompts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import ConfigError
from .hooks import hooks
from .models import ModelAdapter
from .selection import random_seed
from .stats import smd
from .tokens import encode_with_name_positions
from .vocabulary import GENERIC, MATCHED, PRUNED, RANDOM, Setting, scope_selections, settings

FROM_NAME, ALL_POSITIONS = "from_name", "all"
PARTS = ("left", "right", "bias")


@dataclass(frozen=True)
class LayerEdit:
    """x -> x - ((x - bias) @ right.T) @ left.T on one residual layer."""

    left: torch.Tensor  # d x k
    right: torch.Tensor  # k x d
    bias: torch.Tensor  # d

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        """What the edit subtracts from each row of x (..., d)."""
        left, right, bias = (part.to(x) for part in (self.left, self.right, self.bias))
        return ((x - bias) @ right.T) @ left.T

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.shift(x)


@dataclass(frozen=True)
class Edit:
    """The direction edits of one condition (or control): {residual layer: LayerEdit}, and where they act."""

    layers: dict[int, LayerEdit]
    positions: str = FROM_NAME
    unit: str = "directions"

    def count(self) -> int:
        """Layers edited (the `n_pruned` of a direction condition)."""
        return len(self.layers)


# -- fitting --------------------------------------------------------------------------------------------------


def mean_difference(x: torch.Tensor, focal: torch.Tensor) -> LayerEdit:
    """Affine concept editing along the unit difference of the groups' means, to the midpoint of the two."""
    x = x.double()
    reference, focal_mean = x[~focal].mean(0), x[focal].mean(0)
    difference = reference - focal_mean
    # groups with the same mean have no direction: the edit then moves nothing (left = 0)
    u = difference / difference.norm() if difference.norm() > 0 else torch.zeros_like(difference)
    return LayerEdit(u[:, None].float(), u[None, :].float(), ((reference + focal_mean) / 2).float())


def leace(x: torch.Tensor, focal: torch.Tensor, **options) -> LayerEdit:
    """The LEACE eraser of concept-erasure for the 0/1 focal label (float64 fit; `options` go to LeaceFitter).
    The trace constraint can return a full d x d factorisation of a rank <= 2 map: kept to its nonzero part."""
    from concept_erasure import LeaceFitter

    eraser = LeaceFitter.fit(x.double(), focal.double()[:, None], **options).eraser
    left, right = eraser.proj_left, eraser.proj_right
    if left.shape[1] > 1:  # keep the columns that carry the map (singular values above 1e-9 of the largest)
        strength = left.norm(dim=0) * right.norm(dim=1)
        keep = strength > strength.max() * 1e-9
        left, right = left[:, keep], right[keep]
    bias = eraser.bias if eraser.bias is not None else torch.zeros(x.shape[1], dtype=torch.float64)
    return LayerEdit(left.float(), right.float(), bias.float())


FITS = {"mean_difference": mean_difference, "leace": leace}


def separation(edit: LayerEdit, x: torch.Tensor, focal: torch.Tensor) -> float:
    """|SMD| between the groups of the residuals' projections onto the edit's read direction."""
    read = edit.right[0].double()
    projection = (x.double() @ (read / read.norm())).numpy()
    reference, chosen = projection[~focal.numpy()], projection[focal.numpy()]
    value = smd(reference, chosen)
    if np.isnan(value):  # no spread within the groups: perfectly separated if their means differ at all
        return np.inf if len(reference) and len(chosen) and reference.mean() != chosen.mean() else 0.0
    return abs(value)


def random_edit(x: torch.Tensor, edit: LayerEdit, seed: int, matched: bool) -> LayerEdit:
    """A projection through the prompts' mean along a direction uniform on the sphere; `matched`: scaled to the
    edit's mean displacement norm on the prompts x."""
    generator = torch.Generator().manual_seed(seed)
    r = torch.randn(x.shape[1], generator=generator, dtype=torch.float64)
    r /= r.norm()
    mean = x.double().mean(0)
    scale = 1.0
    if matched:
        own = edit.shift(x.double()).norm(dim=1).mean()
        drawn = ((x.double() - mean) @ r).abs().mean()
        scale = float(own / drawn) if drawn > 0 else 0.0
    return LayerEdit((scale * r)[:, None].float(), r[None, :].float(), mean.float())


def shuffled(focal: torch.Tensor, seed: int) -> torch.Tensor:
    """The group labels permuted over the prompts (the generic control's labels)."""
    return focal[torch.randperm(len(focal), generator=torch.Generator().manual_seed(seed))]


# -- masks of unit `directions` -------------------------------------------------------------------------------


def residual_data(scores: pd.DataFrame, variations: Iterable[str], focal_group: str) -> dict[int, tuple]:
    """{layer: (residuals n x d, focal bool n)} of the score table's prompts of these variations."""
    rows = scores[(scores["statistic"] == "residual") & scores["variation"].isin(list(variations))]
    out = {}
    for layer, part in rows.groupby("layer", sort=True):
        x = torch.tensor(np.stack([np.asarray(v, np.float32) for v in part["values"]]))
        out[int(layer)] = (x, torch.tensor((part["group"] == focal_group).to_numpy()))
    return out


def _gathered(scores: Mapping[str, pd.DataFrame], selection: dict, focal_group: str) -> dict[int, tuple]:
    """The selection's residuals per layer, every selected variation of every domain stacked."""
    parts = [residual_data(scores[domain], names, focal_group) for domain, names in selection.items()]
    return {
        layer: (torch.cat([p[layer][0] for p in parts]), torch.cat([p[layer][1] for p in parts]))
        for layer in parts[0]
    }


def _stored(prefix: str, edits: Mapping[int, LayerEdit]) -> dict[str, torch.Tensor]:
    """Tensor names (after `{condition}|{setting}|`) of one edit: `{layer}|{control}.{part}`."""
    return {
        f"{layer}|{prefix}.{name}": getattr(edit, name).clone()
        for layer, edit in edits.items()
        for name in PARTS
    }


def control_part(control: str, seed: int) -> str:
    """The mask-file part of an edit (`edit`) or of one of its controls (`random0`, `matched0`, `generic`)."""
    return {PRUNED: "edit", GENERIC: "generic"}.get(control, f"{control}{seed}")


def build_edits(
    method: str, scope: str, scores: Mapping[str, pd.DataFrame], parameters: dict, groups: Sequence[str]
) -> tuple[dict[str, torch.Tensor], dict]:
    """Every condition of one scope for a direction method: per setting the layers edited (a bool per
    layer, unpacked: the `mask` of the file), the edits and their controls (float tensors), and the manifest."""
    fit = FITS[method]
    variations = {domain: list(dict.fromkeys(table["variation"])) for domain, table in scores.items()}
    chosen_settings = settings("directions", parameters)
    random_seeds = list(range(parameters["random_seeds"]))
    matched_seeds = list(range(parameters.get("matched_seeds", 0)))
    tensors, conditions, shapes, d_model = {}, {}, {}, None
    for name, selection in scope_selections(scope, variations).items():
        data = _gathered(scores, selection, groups[1])
        shapes = {str(layer): [1] for layer in data}
        d_model = next(iter(data.values()))[0].shape[1]
        edits = {layer: fit(x, focal) for layer, (x, focal) in data.items()}
        strength = {layer: separation(edits[layer], *data[layer]) for layer in data}
        generic = {}
        if parameters.get("generic"):
            seed = random_seed(name, "", 0, GENERIC)
            generic = {layer: fit(x, shuffled(focal, seed)) for layer, (x, focal) in data.items()}
        entry = conditions.setdefault(
            name,
            # the |SMD| that ranks layers; "inf" where a layer separates groups with no spread (valid JSON)
            {
                "selection": selection,
                "counts": {},
                "pool": {},
                "generic": {},
                "separation": {str(k): v if np.isfinite(v) else "inf" for k, v in strength.items()},
            },
        )
        for setting in chosen_settings:
            count = Setting.parse(setting).count(len(data))
            if count > len(data):
                raise ConfigError(
                    "config", "masks.directions.layers", f"at most {len(data)} (the residual layers)", count
                )
            order = sorted(data, key=lambda layer: (-strength[layer], layer))
            edited = sorted(order[:count])
            mask = {str(layer): torch.tensor([layer in edited]) for layer in data}
            entry["counts"][setting] = {key: int(value.sum()) for key, value in mask.items()}
            entry["pool"][setting] = 0
            entry["generic"][setting] = count if generic else None
            stored = {"edit": {layer: edits[layer] for layer in edited}}
            if generic:
                stored["generic"] = {layer: generic[layer] for layer in edited}
            for control, seeds in ((RANDOM, random_seeds), (MATCHED, matched_seeds)):
                for seed in seeds:
                    drawn = random_seed(name, setting, seed, control)
                    stored[control_part(control, seed)] = {
                        layer: random_edit(data[layer][0], edits[layer], drawn + layer, control == MATCHED)
                        for layer in edited
                    }
            tensors.update({f"{name}|{setting}|{key}": value for key, value in mask.items()})
            for prefix, part in stored.items():
                tensors.update({f"{name}|{setting}|{key}": v for key, v in _stored(prefix, part).items()})
    manifest = {
        "unit": "directions",
        "method": method,
        "scope": scope,
        "common": "pooled",  # one edit fitted on all the selection's prompts together
        "groups": list(groups),
        "settings": chosen_settings,
        "positions": parameters.get("positions", FROM_NAME),
        "random_seeds": random_seeds,
        "matched_seeds": matched_seeds,
        "generic": bool(parameters.get("generic", False)),
        "conditions": conditions,
        "shapes": shapes,
        "d_model": d_model,
    }
    return tensors, manifest


def edit_of(masks, manifest: dict, condition: str, setting: str, control: str, seed: int) -> Edit:
    """The Edit an evaluation applies: a condition's own, or one of its stored controls."""
    prefix = control_part(control, seed)
    parts = {name: masks.tensors(condition, setting, f"{prefix}.{name}") for name in PARTS}
    layers = {int(key): LayerEdit(*(parts[name][key] for name in PARTS)) for key in parts["bias"]}
    return Edit(layers, manifest.get("positions", FROM_NAME))


# -- applying edits -------------------------------------------------------------------------------------------


def name_tokens(tokenizer, prompts: Iterable[dict]) -> set[tuple[int, ...]]:
    """The token ids of each prompt's first name occurrence, as its chat text tokenizes them."""
    found = set()
    for row in prompts:
        spans = [(span["start"], span["end"]) for span in row["name_spans"]]
        ids, occurrences = encode_with_name_positions(tokenizer, row["text"], spans)
        found.add(tuple(ids[p] for p in occurrences[0]))
    return found


class NameStart:
    """Which positions of a forward lie at or after the first name token: in a forward on a fresh sequence,
    from the first match of a known name's tokens (none if there is none); in a forward that continues a
    cached sequence (the rest after a shared prefix, decoding steps, a candidate trie), from the match, or
    every position where the name came before."""

    def __init__(self, names: Iterable[Sequence[int]]):
        by_length: dict[int, list] = {}
        for tokens in names:
            by_length.setdefault(len(tokens), []).append(list(tokens))
        self.patterns = {length: torch.tensor(rows) for length, rows in by_length.items()}

    def positions(self, ids: torch.Tensor, continued: bool) -> torch.Tensor:
        batch, width = ids.shape
        start = torch.full((batch,), width, dtype=torch.long)
        for length, patterns in self.patterns.items():
            if width < length:
                continue
            windows = ids.cpu().unfold(1, length, 1)  # (batch, width - length + 1, length)
            hits = (windows[:, :, None, :] == patterns[None, None]).all(-1).any(-1)
            first = torch.where(hits.any(1), hits.int().argmax(1), width)
            start = torch.minimum(start, first)
        if continued:
            start = torch.where(start == width, 0, start)
        return (torch.arange(width)[None, :] >= start[:, None]).to(ids.device)


@contextlib.contextmanager
def edited(model, edit: Edit, names: Iterable[Sequence[int]] = ()) -> Iterator[None]:
    """Run the block with `edit` applied by hooks on the residual stream (at the positions it names; `names`:
    the name tokens that mark `from_name`). Every hook is removed on exit, also after an error."""
    adapter = ModelAdapter.of(model)
    on_model = {"device": model.device, "dtype": model.dtype}  # moved once, not in every forward
    by_site = {
        adapter.residual_site(layer): LayerEdit(*(getattr(layer_edit, name).to(**on_model) for name in PARTS))
        for layer, layer_edit in edit.layers.items()
    }
    finder = NameStart(names) if edit.positions == FROM_NAME else None
    where: dict[str, torch.Tensor | None] = {"positions": None}

    def observe(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("cache")
        continued = cache is not None and cache.get_seq_length() > 0
        where["positions"] = finder.positions(ids, continued)

    def apply(site, x):
        shift = by_site[site].shift(x)
        if where["positions"] is not None:
            shift = shift * where["positions"][..., None].to(shift)
        return x - shift

    handle = model.register_forward_pre_hook(observe, with_kwargs=True) if finder else None
    try:
        with hooks(adapter, dict.fromkeys(by_site, apply)):
            yield
    finally:
        if handle is not None:
            handle.remove()

"""Where the selected components sit. Every placement starts from `per_layer`: the components each mask selects
per layer (and matrix), read from the manifest's stored counts. The appendix draws them per layer of one model;
the comparison bins them by relative depth to set models of different depths side by side. Which heads, and how
far the domains' masks overlap, need the masks themselves (`mask_placement`).

Relative depth: a model of n blocks runs from its input (0) to its output (1); block l spans [l/n, (l+1)/n]
and a component of it (a weight entry, an MLP unit, a head) sits at its middle, (l + 0.5)/n; the residual
stream entering block l, where a direction edit acts, sits at l/n (l = n: the stream leaving the last
block). The depth axis is cut into DEPTH_BINS equal bins, closed on the left (the last also on the right);
with an odd number of bins no block's middle falls on a bin edge, for any n."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..vocabulary import Condition, units_label

DEPTH_BINS = 5
PER_LAYER = ["condition", "setting", "layer", "part", "count"]


def layer_part(key: str) -> tuple[int, str]:
    """The layer a mask key names and the part of it: "3" (a unit's layer, or the residual layer a direction
    edit acts on) is (3, ""), "3.q_proj" (a layer's matrix) is (3, "q_proj")."""
    layer, _, part = key.partition(".")
    return int(layer), part


def per_layer(manifest: Mapping) -> pd.DataFrame:
    """Per condition, setting and mask key of a manifest, in its order: the key's layer and part and the
    components the mask selects there (the count stored when the mask was written)."""
    rows = [
        (condition, setting, *layer_part(key), count)
        for condition, entry in manifest["conditions"].items()
        for setting in manifest["settings"]
        for key, count in entry["counts"][setting].items()
    ]
    return pd.DataFrame(rows, columns=PER_LAYER).astype({"layer": np.int64, "count": np.int64})


def depth_bin(layer: int, n_layers: int, residual: bool = False, bins: int = DEPTH_BINS) -> int:
    """The relative-depth bin of a block's component ((layer + 0.5) / n_layers) or of a residual layer
    (layer / n_layers), in integers so that no rounding moves a depth across an edge."""
    if not 0 <= layer < n_layers + residual:
        kind = "residual layer" if residual else "layer"
        raise ValueError(f"{kind} {layer} outside a model of {n_layers} layers")
    index = layer * bins // n_layers if residual else (2 * layer + 1) * bins // (2 * n_layers)
    return min(index, bins - 1)


def relative_depth(layer: int, n_layers: int, residual: bool = False) -> float:
    """Where a block's components (its middle) or a residual layer sit between input (0) and output (1)."""
    return layer / n_layers if residual else (layer + 0.5) / n_layers


def depth_table(manifests: Mapping[str, tuple[int, Sequence[dict]]], bins: int = DEPTH_BINS) -> pd.DataFrame:
    """Per model ({model: (its n_layers, its manifests)}), unit and method, setting and mask (condition) of the
    placement scope, and relative-depth bin: the components the mask selects there (`count`) and their share
    of all it selects (empty where it selects nothing)."""
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for model, (n_layers, own) in manifests.items():
        for manifest in own:
            residual = manifest["unit"] == "directions"
            layers = per_layer(manifest)
            layers["bin"] = [depth_bin(layer, n_layers, residual, bins) for layer in layers["layer"]]
            groups = dict(iter(layers.groupby(["condition", "setting"], sort=False)))
            for condition in manifest["conditions"]:
                domain = Condition.parse(condition, manifest["scope"]).domain
                for setting in manifest["settings"]:
                    own_rows = groups.get((condition, setting), layers.iloc[:0])
                    per_bin = np.bincount(
                        own_rows["bin"].to_numpy(np.int64), own_rows["count"], minlength=bins
                    ).astype(np.int64)
                    total = int(per_bin.sum())
                    rows += [
                        {
                            "model": model,
                            "unit": manifest["unit"],
                            "method": manifest["method"],
                            "units": units_label(manifest["unit"], manifest["method"]),
                            "setting": setting,
                            "scope": manifest["scope"],
                            "condition": condition,
                            "domain": domain,
                            "bin": f"{edges[i]:.1f}-{edges[i + 1]:.1f}",
                            "depth_low": edges[i],
                            "depth_high": edges[i + 1],
                            "count": int(per_bin[i]),
                            "share": per_bin[i] / total if total else np.nan,
                        }
                        for i in range(bins)
                    ]
    return pd.DataFrame(rows)


def pooled_depths(placement: pd.DataFrame) -> pd.DataFrame:
    """Per model, unit and method, setting and bin: the share of the components that all the scope's masks
    select together (counts summed over the masks): what the comparison's figure draws and its page lists."""
    keys = ["model", "units", "setting"]
    pooled = placement.groupby([*keys, "bin", "depth_low", "depth_high"], sort=False, as_index=False)[
        "count"
    ].sum()
    total = pooled.groupby(keys, sort=False)["count"].transform("sum")
    pooled["share"] = (pooled["count"] / total).where(total > 0)
    return pooled


def jaccard(masks: Sequence[tuple[str, Mapping]]) -> pd.DataFrame:
    """Pairwise Jaccard overlap of boolean masks ({key: bool tensor}), as long rows a, b, jaccard. Key by key:
    each mask's key is read (a lazy mask decodes it) once, whatever the number of masks."""
    inter, union = np.zeros((len(masks), len(masks))), np.zeros((len(masks), len(masks)))
    for key in masks[0][1]:
        values = [mask[key] for _, mask in masks]
        for i, first in enumerate(values):
            for j, second in enumerate(values):
                inter[i, j] += int((first & second).sum())
                union[i, j] += int((first | second).sum())
    return pd.DataFrame(
        [
            {"a": a, "b": b, "jaccard": inter[i, j] / union[i, j] if union[i, j] else np.nan}
            for i, (a, _) in enumerate(masks)
            for j, (b, _) in enumerate(masks)
        ]
    )


def mask_placement(files: Sequence[str | os.PathLike]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """From `domain`-scope mask files, the first setting of each: components per layer (and matrix; per_layer),
    heads per (layer, head), and the Jaccard overlap of the domains' masks."""
    from ..maskfile import load_masks

    layers, heads, overlaps = [], [], []
    for path in files:
        manifest, masks = load_masks(path)
        unit, units, setting = (
            manifest["unit"],
            units_label(manifest["unit"], manifest["method"]),
            manifest["settings"][0],
        )
        own = per_layer(manifest)
        own = own[own["setting"] == setting]
        layers.append(own.assign(units=units, part=own["part"].where(own["part"] != "", unit)))
        chosen = [(condition, masks[condition, setting]) for condition in manifest["conditions"]]
        if unit == "heads":
            heads += [
                {"units": units, "layer": layer_part(key)[0], "head": head, "count": int(flag)}
                for _, mask in chosen
                for key, value in mask.items()
                for head, flag in enumerate(value.tolist())
            ]
        if len(chosen) > 1:
            overlaps.append(jaccard(chosen).assign(units=units))
    overlap_table = (
        pd.concat(overlaps, ignore_index=True)
        if overlaps
        else pd.DataFrame(columns=["a", "b", "jaccard", "units"])
    )
    return (
        pd.concat(layers, ignore_index=True)[["units", "layer", "part", "count"]]
        if layers
        else pd.DataFrame(columns=["units", "layer", "part", "count"]),
        pd.DataFrame(heads, columns=["units", "layer", "head", "count"]),
        overlap_table,
    )

"""Choosing what to prune from scores: the paper's Wanda set difference, top-k of units, intersections
across variations, and random controls of the same size. Pure functions on tensors."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def top_fraction(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Bool of the int(fraction * numel) largest entries (ties broken by position)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    count = int(fraction * scores.numel())
    chosen = torch.zeros(scores.numel(), dtype=torch.bool)
    if count:
        chosen[torch.topk(_never_nan(scores.flatten()), count, sorted=False).indices] = True
    return chosen.view(scores.shape)


def _never_nan(scores: torch.Tensor) -> torch.Tensor:
    """Undefined scores (NaN) rank last: topk would otherwise take NaN as the largest value."""
    return scores.float().nan_to_num(nan=-torch.inf)


def wanda_set_difference(
    weight: torch.Tensor,
    norm_select: torch.Tensor,
    norm_protect: torch.Tensor,
    tau_select: float,
    tau_protect: float,
) -> torch.Tensor:
    """The paper's prune set of one matrix: top-tau of |W_ij| * ||X_j|| for the selected group, minus the
    top-tau of the same score for the protected group (the paper: select Black, protect White)."""
    magnitude = weight.abs().float()
    return top_fraction(magnitude * norm_select[None, :], tau_select) & ~top_fraction(
        magnitude * norm_protect[None, :], tau_protect
    )


def top_k(scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """The k largest entries over all layers' score vectors ({layer: scores}) as {layer: bool}."""
    layers = list(scores)
    flat = _never_nan(torch.cat([scores[layer].flatten() for layer in layers]))
    if not 0 < k <= flat.numel():
        raise ValueError(f"k must lie in 1..{flat.numel()}, got {k}")
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.topk(flat, k, sorted=False).indices] = True
    out, start = {}, 0
    for layer in layers:
        size = scores[layer].numel()
        out[layer] = chosen[start : start + size].view(scores[layer].shape)
        start += size
    return out


def intersect(masks: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Components selected in every mask (the paper's 'common' set across variations)."""
    masks = list(masks)
    return {key: torch.stack([mask[key] for mask in masks]).all(0) for key in masks[0]}


def random_like(mask: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A random control: the same number of components per key (matrix or layer), chosen uniformly."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(mask):
        chosen = torch.zeros(mask[key].numel(), dtype=torch.bool)
        chosen[torch.randperm(mask[key].numel(), generator=generator)[: int(mask[key].sum())]] = True
        out[key] = chosen.view(mask[key].shape)
    return out

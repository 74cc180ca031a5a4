"""Choosing what to prune from scores: the paper's Wanda set difference, top-k of units, the rules that
combine variations into a general mask (intersection, majority, the K most frequent), and the controls of a
mask (uniform or pool-matched random components of the same count, the generic top components of a
group-blind score). Pure functions on tensors."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from .bits import LazyMask, total
from .vocabulary import RANDOM


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
    """Components selected in every mask (the paper's 'common' set of weights across variations)."""
    masks = list(masks)
    return {key: torch.stack([mask[key] for mask in masks]).all(0) for key in masks[0]}


def majority(masks: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Components selected in at least half of the masks (never empty by construction, unlike intersect)."""
    masks = list(masks)
    return {
        key: 2 * torch.stack([mask[key] for mask in masks]).sum(0, dtype=torch.int32) >= len(masks)
        for key in masks[0]
    }


def most_frequent(
    masks: Iterable[dict[str, torch.Tensor]], scores: dict[str, torch.Tensor], k: int
) -> dict[str, torch.Tensor]:
    """The k components selected most often across the masks, ties broken by the summed score (the authors'
    general head set: the 40 heads most frequent across the training items' lists)."""
    masks = list(masks)
    counts = {key: torch.stack([m[key] for m in masks]).sum(0, dtype=torch.float64) for key in masks[0]}
    # Frequencies are integers: scaling them above any summed score makes the score decide only ties.
    scale = 1 + 2 * max(float(_never_nan(s).abs().max()) for s in scores.values())
    return top_k({key: counts[key] * scale + _never_nan(scores[key]).double() for key in counts}, k)


def random_like(
    mask: Mapping[str, torch.Tensor],
    seed: int,
    pool: Mapping[str, torch.Tensor] | None = None,
    per_key: bool = True,
) -> Mapping[str, torch.Tensor]:
    """A random control of the mask's size, drawn uniformly from the whole key or, for a matched control,
    from `pool` (the components the mask was chosen among). `per_key`: the same count in every key (matrix
    or layer), each key drawn when it is read, by a generator of its own (the seed and the key's name), so a
    model-sized control is never whole in memory; otherwise the same total over all keys (a unit pool is a
    rank band across layers), drawn at once."""
    if per_key:

        def draw(key: str) -> torch.Tensor:
            generator = torch.Generator().manual_seed(seed + zlib.crc32(key.encode()))
            return _draw([key], mask, pool, generator)[key]

        return LazyMask(sorted(mask), draw, lambda: total(mask))
    return _draw(sorted(mask), mask, pool, torch.Generator().manual_seed(seed))


def _draw(keys: list[str], mask, pool, generator) -> dict[str, torch.Tensor]:
    """As many components as `mask` holds over `keys`, drawn from `pool` (or anywhere) over those keys."""
    values = {key: mask[key] for key in keys}
    count = sum(int(value.sum()) for value in values.values())
    sizes = [value.numel() for value in values.values()]
    allowed = torch.cat(
        [
            torch.ones(size, dtype=torch.bool) if pool is None else pool[key].flatten()
            for key, size in zip(keys, sizes, strict=True)
        ]
    )
    candidates = allowed.nonzero().flatten()
    if count > len(candidates):
        raise ValueError(f"{keys[0]}: {count} components to draw from a pool of {len(candidates)}")
    chosen = torch.zeros(sum(sizes), dtype=torch.bool)
    chosen[candidates[torch.randperm(len(candidates), generator=generator)[:count]]] = True
    return {key: part.view(values[key].shape) for key, part in zip(keys, chosen.split(sizes), strict=True)}


def top_like(mask: dict[str, torch.Tensor], scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The generic (non-targeted) control: per key, as many components as the mask holds there, the ones
    with the largest group-blind score."""
    out = {}
    for key, value in mask.items():
        flat, count = _never_nan(scores[key].flatten()), int(value.sum())
        chosen = torch.zeros(flat.numel(), dtype=torch.bool)
        if count:
            chosen[torch.topk(flat, count, sorted=False).indices] = True
        out[key] = chosen.view(value.shape)
    return out


def next_band(mask: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], width: int = 2):
    """The matched pool of a unit mask: the `width` x |mask| units ranked just below the mask by the same
    score (over all layers), the band a size-matched control draws from."""
    total = sum(int(v.sum()) for v in mask.values())
    size = sum(v.numel() for v in mask.values())
    if total == 0 or total == size:
        return {key: torch.zeros_like(value) for key, value in mask.items()}
    ranked = {key: scores[key].float().masked_fill(mask[key], -torch.inf) for key in mask}
    band = top_k(ranked, min(width * total, size - total))
    return {key: band[key] & ~mask[key] for key in mask}


def score_matched(
    mask: torch.Tensor, scores: torch.Tensor, key: str, width: float = 1.1, step: float = 0.05
) -> torch.Tensor:
    """The matched pool of one matrix's weight mask: entries outside the mask with the mask's own score
    profile, so that a control drawing |mask| of them uniformly removes entries of the mask's magnitudes.

    Scores are binned on a log scale (`step` wide: entries within about 5% of each other). Each bin's quota
    is `width` x the mask entries in it; where a bin has fewer other entries than its quota (just above the
    paper's threshold the mask takes most entries), the rest passes to the next lower bin, and what is left
    at the bottom to the higher bins. Each entry outside the mask enters the pool with probability quota /
    other entries of its bin (a thinning seeded by `key`); `width` grows until the pool holds |mask|. A mask
    holding more than half its matrix has no such pool: the pool is then the whole matrix (a uniform draw)."""
    chosen = mask.numpy().ravel()
    count = int(chosen.sum())
    if count == 0:
        return torch.zeros_like(mask)
    if chosen.size - count < count:
        return torch.ones_like(mask)
    flat = scores.float().numpy().ravel()
    positive = flat > 0  # NaN and zero scores share bin 0
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(flat, where=positive, out=np.zeros_like(flat))
    floor = logs[positive].min() if positive.any() else 0.0
    # bin 0: zero scores; then one bin per `step` of log score above the smallest
    bins = np.where(positive, ((logs - floor) / step).astype(np.int64) + 1, 0)
    inside = np.bincount(bins[chosen], minlength=int(bins.max()) + 1)
    outside = np.bincount(bins, minlength=len(inside)) - inside
    draws = np.random.default_rng(zlib.crc32(key.encode())).random(flat.size, dtype=np.float32)
    while True:
        take, carry = np.zeros(len(inside)), 0.0
        for index in range(len(inside) - 1, -1, -1):  # from the largest scores down
            take[index] = min(outside[index], width * inside[index] + carry)
            carry = width * inside[index] + carry - take[index]
        for index in range(len(inside)):  # what the smallest bins could not hold, upwards
            extra = min(outside[index] - take[index], carry)
            take[index], carry = take[index] + extra, carry - extra
        keep = (take / np.maximum(outside, 1)).astype(np.float32)
        pool = ~chosen & (draws < keep[bins])
        if int(pool.sum()) >= count:
            return torch.from_numpy(pool.reshape(mask.shape))
        width *= 1.25


def random_seed(condition: str, setting: str, seed: int, control: str = RANDOM) -> int:
    """The generator seed of one random control: the same in every job, different across conditions."""
    key = f"{condition}|{setting}|{seed}" + ("" if control == RANDOM else f"|{control}")
    return zlib.crc32(key.encode())

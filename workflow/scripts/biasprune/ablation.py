"""Applying a pruning mask reversibly: by hooks, or by editing weights that are restored on exit.

A mask removes components of one unit:
- `weights`: entries W_ij of the seven linear layers (zeroed);
- `neurons`: MLP units, i.e. input channels of down_proj (zeroed);
- `heads`: query heads, ablated as `zero` (the head's slice of the o_proj input is zeroed: true removal),
  `mean` (replaced by its mean over neutral prompts) or `q_zero` (the head's rows of q_proj are zeroed, the
  authors' method: the head then attends uniformly). Other query heads of the same key/value group are never
  touched (GQA).
The model object is never reloaded; after the `with` block it is bit-identical to before. `head_means` gives
the per-head means that `mean` ablation puts in place of a pruned head.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .bits import decode, encode, total
from .decoding import encode_left_padded
from .hooks import hooks, split_site
from .models import ModelAdapter
from .tokens import chat_prompt


@dataclass(frozen=True)
class Mask:
    """Components to remove. `keys`: weights '{layer}.{linear}' -> bool tensor shaped like the weight;
    neurons '{layer}' -> bool (d_mlp,); heads '{layer}' -> bool (n_heads,). True = pruned."""

    unit: str
    keys: dict[str, torch.Tensor]
    ablation: str = "zero"
    means: dict[str, torch.Tensor] = field(
        default_factory=dict
    )  # heads/mean: '{layer}' -> (n_heads * head_dim,)

    def count(self) -> int:
        return total(self.keys)


def _head_slices(adapter: ModelAdapter, pruned: torch.Tensor) -> torch.Tensor:
    """Bool over the o_proj input features (n_heads * head_dim) of the pruned heads."""
    return pruned.repeat_interleave(adapter.head_dim)


def _hook_functions(adapter: ModelAdapter, mask: Mask) -> dict:
    """Per site, the function that removes the mask's neurons or heads there (their data looked up by site)."""
    keep, features, means = {}, {}, {}
    for key, pruned in mask.keys.items():
        if mask.unit == "neurons":
            keep[f"blocks.{key}.mlp.hook_post"] = (~pruned).to(adapter.model.dtype)
        elif mask.unit == "heads" and mask.ablation in ("zero", "mean"):
            if mask.ablation == "mean" and key not in mask.means:
                raise KeyError(
                    f"mean ablation of heads in layer {key} needs their mean (mask.means[{key!r}])"
                )
            features[f"blocks.{key}.attn.hook_z"] = _head_slices(adapter, pruned)
            means[f"blocks.{key}.attn.hook_z"] = mask.means[key] if mask.ablation == "mean" else None

    def keep_units(site, x):
        return x * keep[site].to(x.device)

    def ablate_heads(site, z):
        chosen, mean = features[site], means[site]
        z = z.clone()
        z[..., chosen.to(z.device)] = 0 if mean is None else mean.to(z)[chosen].to(z.device)
        return z

    return dict.fromkeys(keep, keep_units) | dict.fromkeys(features, ablate_heads)


@contextlib.contextmanager
def _linear_output_hooks(adapter: ModelAdapter, mask: Mask) -> Iterator[None]:
    """Weights and q_zero heads by hooks: the linear layer's output is recomputed with the masked weight. A
    weight mask is looked up in `mask.keys` at each call (a lazy mask decodes that one matrix then), so no
    decoded matrix is held between calls."""
    handles = []
    try:
        for key in mask.keys:
            if mask.unit == "weights":
                layer, name = key.split(".")
                module = adapter.linear(int(layer), name)

                def keep(key=key):
                    return ~mask.keys[key]

            else:
                module = adapter.linear(int(key), "q_proj")
                rows = ~_head_slices(adapter, mask.keys[key])

                def keep(rows=rows, module=module):
                    return rows[:, None].expand_as(module.weight)

            def hook(module, args, output, keep=keep, with_bias=mask.unit != "weights"):
                kept = keep().to(module.weight.device)
                bias = module.bias
                if bias is not None and with_bias:
                    bias = bias * kept[:, 0].to(bias)
                return F.linear(args[0], module.weight * kept.to(module.weight), bias)

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _edits(
    adapter: ModelAdapter, mask: Mask, key: str, pruned: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bool of entries to zero) pairs that remove the components of one key of the mask by editing
    weights."""
    if mask.unit == "weights":
        layer, name = key.split(".")
        return [(adapter.linear(int(layer), name).weight, pruned)]
    if mask.unit == "neurons":
        weight = adapter.linear(int(key), "down_proj").weight
        return [(weight, pruned[None, :].expand_as(weight))]
    if mask.ablation == "zero":
        weight = adapter.linear(int(key), "o_proj").weight
        return [(weight, _head_slices(adapter, pruned)[None, :].expand_as(weight))]
    if mask.ablation == "q_zero":  # the head's query rows, and their bias where there is one (Qwen2)
        q_proj, rows = adapter.linear(int(key), "q_proj"), _head_slices(adapter, pruned)
        edits = [(q_proj.weight, rows[:, None].expand_as(q_proj.weight))]
        return edits + ([(q_proj.bias, rows)] if q_proj.bias is not None else [])
    raise ValueError("mean ablation of heads has no weight edit (it adds a bias); use hooks")


@contextlib.contextmanager
def masked(model, mask: Mask, how: str = "hooks") -> Iterator[None]:
    """Run the block with `mask` applied by `hooks` or by `edit`ing weights (restored exactly on exit)."""
    adapter = ModelAdapter.of(model)
    if how == "edit":
        # One key (matrix or layer) at a time: its mask is read (decoded or drawn), the entries it zeroes
        # are kept (in row-major order) with the mask stored compactly (bits.encode), then zeroed; on exit
        # exactly the edits made are undone. Memory: the values zeroed plus at most a bit per weight.
        saved = []
        try:
            with torch.no_grad():
                for key in mask.keys:
                    for weight, pruned in _edits(adapter, mask, key, mask.keys[key]):
                        pruned = pruned.to(weight.device)
                        saved.append((weight, encode(pruned), pruned.shape, weight.detach()[pruned]))
                        weight.masked_fill_(pruned, 0)
            yield
        finally:
            with torch.no_grad():
                for weight, stored, shape, values in reversed(saved):
                    weight.masked_scatter_(decode(stored, shape).to(weight.device), values)
        return
    if mask.unit == "weights" or (mask.unit == "heads" and mask.ablation == "q_zero"):
        with _linear_output_hooks(adapter, mask):
            yield
        return
    with hooks(adapter, _hook_functions(adapter, mask)):
        yield


@torch.inference_mode()
def head_means(model, tokenizer, texts: Sequence[str], batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Mean of each layer's attention output per head (attn.hook_z, n_heads * head_dim) over every token of
    the neutral prompts: what `mean` ablation puts in place of a pruned head."""
    adapter = ModelAdapter.of(model)
    sums, count = {}, 0

    def collect(site, z):
        layer, _ = split_site(site)
        kept = z[mask.bool()].float()
        sums[str(layer)] = sums.get(str(layer), 0) + kept.sum(0)

    chats = [chat_prompt(tokenizer, text) for text in texts]
    for start in range(0, len(chats), batch_size):
        batch = encode_left_padded(tokenizer, chats[start : start + batch_size], model.device)
        mask = batch["attention_mask"]
        with hooks(adapter, {f"blocks.{layer}.attn.hook_z": collect for layer in range(adapter.n_layers)}):
            model(**batch, use_cache=False)
        count += int(mask.sum())
    return {layer: (total / count).to(model.dtype) for layer, total in sums.items()}

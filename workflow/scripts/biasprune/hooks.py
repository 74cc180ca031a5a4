"""Hooks on named sites (TransformerLens names, `blocks.{layer}.{site}`), live only inside a context manager.
A hook function is called as `function(site, activation)`, so one function can serve many sites."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch

from .models import ModelAdapter

HookFn = Callable[[str, torch.Tensor], "torch.Tensor | None"]


def split_site(site: str) -> tuple[int, str]:
    """(layer, site within the layer) of a site name: `blocks.3.attn.hook_z` -> (3, `attn.hook_z`)."""
    _, layer, name = site.split(".", 2)
    return int(layer), name


def _hook_for(kind: str, function: HookFn, site: str):
    if kind == "input":

        def pre_hook(module, args):
            replaced = function(site, args[0])
            return None if replaced is None else (replaced, *args[1:])

        return "pre", pre_hook
    if kind == "output":
        return "post", lambda module, args, output: function(site, output)
    if kind == "attention":

        def attention_hook(module, args, output):
            if output[1] is None:
                raise RuntimeError("attention weights need attn_implementation='eager'")
            function(site, output[1])

        return "post", attention_hook
    raise ValueError(kind)


@contextlib.contextmanager
def hooks(adapter: ModelAdapter, functions: Mapping[str, HookFn | list[HookFn]]) -> Iterator[None]:
    """Call `functions[site](site, activation)` whenever the model computes that site; a function may return
    a tensor to replace the activation (input and output sites). Exactly the handles added here are removed
    on exit, whether the block ends normally or raises."""
    handles = []
    try:
        for name, function_or_list in functions.items():
            module, kind = adapter.site(name)
            for function in function_or_list if isinstance(function_or_list, list) else [function_or_list]:
                when, hook = _hook_for(kind, function, name)
                register = module.register_forward_pre_hook if when == "pre" else module.register_forward_hook
                handles.append(register(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def hook_count(model: torch.nn.Module) -> int:
    """Forward hooks currently registered anywhere in `model` (for tests and sanity checks)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

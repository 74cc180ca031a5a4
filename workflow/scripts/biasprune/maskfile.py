"""The mask file format: a safetensors file of masks (`{condition}|{setting}|{key}[|{part}]`, each tensor packed
bits or sorted indices, `bits.encode`) beside a JSON manifest (unit, method, scope, conditions, settings, shapes,
what was stored how). `masks.py` builds and writes them; evaluation, damage, export and the figures read them
here, without the ranking code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from .bits import LazyMask, decode, stored_count
from .errors import ConfigError


def check_shapes(manifest: dict, model, file) -> None:
    """A mask file made for another model is refused with one line."""
    from .models import ModelAdapter  # only when a model is given: reading a file needs no model code

    adapter = ModelAdapter.of(model)
    if manifest["unit"] == "directions":  # one edit per residual layer (0..n_layers) of width d_model
        expected = {"layers": adapter.n_layers + 1, "d_model": adapter.d_model}
        found = {"layers": len(manifest["shapes"]), "d_model": manifest["d_model"]}
        for key, value in expected.items():
            if found[key] != value:
                raise ConfigError(file, key, f"the model's {value}", found[key])
        return
    for key, shape in manifest["shapes"].items():
        if manifest["unit"] == "weights":
            layer, linear = key.split(".")
            expected = list(adapter.linear(int(layer), linear).weight.shape)
        else:
            expected = [adapter.d_mlp if manifest["unit"] == "neurons" else adapter.n_heads]
        if list(shape) != expected:
            raise ConfigError(file, f"shapes.{key}", f"the model's shape {expected}", list(shape))


class MaskFile(Mapping):
    """{(condition, setting): {key: bool tensor}} of a mask file, decoded on access (a weights file holds
    a model-sized mask per condition: a job reads and decodes only the ones it applies)."""

    def __init__(self, path, manifest: dict):
        from safetensors import safe_open

        self._file = safe_open(str(path), framework="pt")
        self._shapes = manifest["shapes"]
        self._names: dict[tuple[str, str, str], list[str]] = {}
        for name in self._file.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
            condition, setting, _, *part = name.split("|")
            self._names.setdefault((condition, setting, part[0] if part else "mask"), []).append(name)

    def part(self, condition: str, setting: str, part: str) -> LazyMask:
        """A condition's `mask`, its matched `pool` or its `generic` control (empty where there is none), each
        key read from the file and decoded when it is used (`bits.LazyMask`)."""
        names = {name.split("|")[2]: name for name in self._names.get((condition, setting, part), ())}
        return LazyMask(
            names,
            lambda key: decode(self._file.get_tensor(names[key]), self._shapes[key]),
            lambda: sum(stored_count(self._file.get_tensor(name)) for name in names.values()),
        )

    def tensors(self, condition: str, setting: str, part: str) -> dict[str, torch.Tensor]:
        """A part as stored (not decoded): the float tensors of a direction edit."""
        return {
            name.split("|")[2]: self._file.get_tensor(name)
            for name in self._names.get((condition, setting, part), ())
        }

    def __getitem__(self, item: tuple[str, str]) -> LazyMask:
        if (*item, "mask") not in self._names:
            raise KeyError(item)
        return self.part(*item, "mask")

    def __iter__(self):
        return iter([(c, s) for c, s, part in self._names if part == "mask"])

    def __len__(self) -> int:
        return len(list(iter(self)))


def load_masks(path, model=None) -> tuple[dict, MaskFile]:
    """The manifest and the masks of a mask file (checked against `model`'s shapes when given)."""
    path = Path(path)
    manifest = json.loads(path.with_suffix(".json").read_text())
    if model is not None:
        check_shapes(manifest, model, path.with_suffix(".json"))
    return manifest, MaskFile(path, manifest)

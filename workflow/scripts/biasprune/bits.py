"""How masks are stored and read back: a bool mask as sorted flat indices where they are smaller than packed
bits (sparse masks), packed bits otherwise; a model-sized mask as a mapping that decodes one key (one matrix
or layer) at a time, so a job never holds a whole model's mask as one byte per weight; and the safetensors
file they go to, written one tensor at a time (`TensorWriter`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from .io import atomic_path

INDEX_BYTES = {torch.int32: 4, torch.int64: 8}


def encode(mask: torch.Tensor) -> torch.Tensor:
    """A bool mask as stored: its sorted flat indices (int32; int64 beyond 2**31 - 1 entries) where they take
    fewer bytes than packed bits, else packed bits (uint8, numpy's bit order). `decode` tells them apart by
    dtype."""
    mask = mask.detach().cpu()
    numel, count = mask.numel(), int(mask.sum())
    index = torch.int32 if numel < 2**31 else torch.int64
    if count * INDEX_BYTES[index] < (numel + 7) // 8:
        return mask.flatten().nonzero().flatten().to(index)
    return torch.from_numpy(np.packbits(mask.contiguous().numpy().ravel()))


def decode(stored: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The bool mask of `shape` that `encode` stored."""
    count = int(np.prod(shape))
    if stored.dtype == torch.uint8:
        return torch.from_numpy(np.unpackbits(stored.numpy(), count=count).astype(bool).reshape(shape))
    out = torch.zeros(count, dtype=torch.bool)
    out[stored.long()] = True
    return out.view(*shape)


def encoding(stored: torch.Tensor) -> str:
    return "bits" if stored.dtype == torch.uint8 else "indices"


def stored_count(stored: torch.Tensor) -> int:
    """Entries set in a stored mask, without decoding it."""
    if stored.dtype == torch.uint8:
        return int(np.bitwise_count(stored.numpy()).sum())
    return stored.numel()


class LazyMask(Mapping):
    """{key: bool tensor} whose values are made when read (`make(key)`), one at a time: a mask file's part
    decoded from disk, or a random control drawn per key. `total()` counts without keeping any value."""

    def __init__(self, keys: Iterable[str], make: Callable[[str], torch.Tensor], total: Callable[[], int]):
        self._keys, self._make, self._total = list(keys), make, total

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._make(key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def total(self) -> int:
        return self._total()


def total(mask: Mapping[str, torch.Tensor]) -> int:
    """Entries set over all keys of a mask (a LazyMask counts itself)."""
    if isinstance(mask, LazyMask):
        return mask.total()
    return int(sum(int(value.sum()) for value in mask.values()))


SAFETENSORS_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "uint8": "U8",
    "bool": "BOOL",
}


class TensorWriter:
    """A safetensors file written one tensor at a time: each tensor's bytes go to a spool file on disk when it
    is added (memory never holds the file), and the header (name, dtype, shape, offsets) is written at
    `save`. Tensors are laid out by element size, largest first, so each starts at a multiple of its own
    element size (the alignment safetensors' own writer gives). Use as a context manager; `save` is atomic."""

    def __init__(self, spool_dir: str | os.PathLike | None = None):
        self._spool_dir = spool_dir
        self._spools: dict[int, tuple] = {}  # element size -> (spool file, [(name, dtype, shape, nbytes)])
        self._files = contextlib.ExitStack()

    def add(self, name: str, tensor: torch.Tensor) -> None:
        tensor = tensor.detach().cpu().contiguous()
        dtype = SAFETENSORS_DTYPES[str(tensor.dtype).removeprefix("torch.")]
        size = tensor.element_size()
        if size not in self._spools:
            spool = tempfile.TemporaryFile(dir=self._spool_dir)  # noqa: SIM115 (closed by close())
            self._spools[size] = (self._files.enter_context(spool), [])
        spool, entries = self._spools[size]
        data = tensor.flatten().view(torch.uint8).numpy()
        spool.write(memoryview(data))
        entries.append((name, dtype, list(tensor.shape), data.nbytes))

    def save(self, path: str | os.PathLike) -> None:
        header, offset = {}, 0
        for size in sorted(self._spools, reverse=True):
            for name, dtype, shape, nbytes in self._spools[size][1]:
                header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # the data start at a multiple of 8
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            out.write(len(text).to_bytes(8, "little") + text)
            for size in sorted(self._spools, reverse=True):
                spool = self._spools[size][0]
                spool.seek(0)
                shutil.copyfileobj(spool, out, 1 << 22)

    def close(self) -> None:
        self._files.close()
        self._spools = {}

    def __enter__(self) -> TensorWriter:
        return self

    def __exit__(self, *_) -> None:
        self.close()

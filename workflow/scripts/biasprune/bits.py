"""How a bool mask is stored and read back: sorted flat indices where they are smaller than packed bits
(sparse masks), packed bits otherwise; and a model-sized mask as a mapping that decodes one key (one matrix
or layer) at a time, so a job never holds a whole model's mask as one byte per weight."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

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

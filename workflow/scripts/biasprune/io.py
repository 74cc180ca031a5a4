"""Atomic file output, hashing and Parquet with provenance metadata."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    A reader (or Snakemake after a crash) never sees a half-written file or folder. A temporary sibling
    left by an attempt that was killed (SIGKILL runs no cleanup) is removed by the next attempt.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Exactly the names tempfile gives below (8 random characters): not `.{name}.5...` of a sibling `{name}.5`.
    ours = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}(\.tmp)?")
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if not ours.fullmatch(stale.name):
            continue
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    else:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        tmp.chmod((0o777 if directory else 0o666) & ~_umask())  # as if created normally, not 0600/0700
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def provenance_metadata(provenance: Mapping[str, object], metadata: Mapping | None = None) -> dict:
    """Parquet key-value metadata with `provenance` as JSON under the key `biasprune`."""
    return {**(metadata or {}), b"biasprune": json.dumps(provenance, sort_keys=True, default=str).encode()}


def write_parquet(table: pa.Table, path: str | os.PathLike, provenance: Mapping[str, object]) -> None:
    """Write `table` atomically with its provenance in the key-value metadata."""
    with atomic_path(path) as tmp:
        pq.write_table(
            table.replace_schema_metadata(provenance_metadata(provenance, table.schema.metadata)), tmp
        )


def read_provenance(path: str | os.PathLike) -> dict:
    """The provenance dict that `write_parquet` stored."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata.get(b"biasprune", b"{}"))


def config_hash(parameters: dict) -> str:
    """A short, stable hash of a JSON-able parameter set (provenance of masks and of a run)."""
    return hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode()).hexdigest()[:16]


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

    def add(self, name: str, tensor) -> None:
        import torch

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

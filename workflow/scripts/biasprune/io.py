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


def source_commit(path: str | os.PathLike = __file__) -> str | None:
    """The git commit of the checkout holding `path` (this library by default), with `-dirty` when its
    tracked files differ from it; None outside a git checkout (a copied or installed workflow)."""
    import subprocess

    folder = Path(path).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")

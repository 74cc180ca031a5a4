"""Atomic outputs and Parquet provenance."""

import pyarrow as pa
import pytest

from biasprune.io import atomic_path, read_provenance, sha256_file, write_parquet


def test_atomic_file_appears_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]


def test_temporary_siblings_of_a_killed_attempt_are_removed_by_the_next(tmp_path):
    """A SIGKILLed job leaves its temporary sibling (no cleanup runs); the next write of that path clears it,
    and leaves other files' temporaries (and hidden files of other names) alone."""
    target = tmp_path / "out [1].parquet"
    (tmp_path / ".out [1].parquet.abc12_34.tmp").write_text("half")
    (tmp_path / ".out [1].parquet.xyz5678q").mkdir()  # a folder attempt
    others = [
        ".other.parquet.def45678.tmp",
        ".out [1].parquet.5.abc12345",
    ]  # another output's, `out [1].parquet.5`
    for name in others:
        (tmp_path / name).write_text("another job's")
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "out [1].parquet"])


def test_atomic_directory_replaces_old_content_only_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_path(target, directory=True) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in target.iterdir()] == ["a"]


def test_parquet_provenance_round_trip(tmp_path):
    table = pa.table({"x": [1, 2]}, metadata={"kept": "yes"})
    write_parquet(table, tmp_path / "t.parquet", {"model": "m", "seed": 3})
    assert read_provenance(tmp_path / "t.parquet") == {"model": "m", "seed": 3}
    assert pa.parquet.read_table(tmp_path / "t.parquet").schema.metadata[b"kept"] == b"yes"


def test_sha256_of_a_known_string(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

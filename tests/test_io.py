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


def test_tensor_writer_is_read_back_by_safetensors_itself_aligned_and_leaves_nothing_behind(tmp_path):
    """Tensors of every element size, odd lengths, empty and 0-d, added in a mixed order: safetensors' own
    reader returns each one exactly; every tensor starts at a multiple of its element size (checked from the
    header, which must be padded to 8 bytes); the spool files are gone and a failed save leaves no file."""
    import json
    import struct

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from biasprune.bits import TensorWriter

    tensors = {
        "packed": torch.arange(13, dtype=torch.uint8),
        "indices": torch.tensor([3, 70000, 2**31 - 1], dtype=torch.int32),
        "flags": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, dtype=torch.int32),
        "edit": torch.randn(3, 5),
        "half": torch.randn(7, dtype=torch.bfloat16),
        "big": torch.tensor([2**40, -1], dtype=torch.int64),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
    }
    path = tmp_path / "out" / "file.safetensors"
    path.parent.mkdir()
    with TensorWriter(path.parent) as writer:
        for name, value in tensors.items():
            writer.add(name, value)
        writer.save(path)
    loaded = load_file(path)
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        assert torch.equal(loaded[name], value), name
    with safe_open(
        str(path), framework="pt"
    ) as handle:  # one tensor read alone, as a job reads one condition
        assert handle.get_tensor("indices").tolist() == [3, 70000, 2**31 - 1]
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    assert size % 8 == 0
    for name, value in tensors.items():
        start, end = header[name]["data_offsets"]
        assert start % value.element_size() == 0 and end - start == value.numel() * value.element_size()
    assert len(raw) == 8 + size + sum(v.numel() * v.element_size() for v in tensors.values())
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.safetensors"]  # spools are unnamed

    with pytest.raises(KeyError), TensorWriter(tmp_path) as writer:
        writer.add("fine", torch.zeros(2))
        writer.add("not storable", torch.zeros(2, dtype=torch.complex64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_source_commit_names_the_checkout_and_whether_it_was_changed(tmp_path):
    import subprocess

    from biasprune.io import source_commit

    def git(*args):
        command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
        return subprocess.run(
            command, cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout.strip()

    script = tmp_path / "workflow" / "script.py"
    script.parent.mkdir()
    script.write_text("x = 1\n")
    assert source_commit(script) is None  # not a checkout
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "one")
    head = git("rev-parse", "HEAD")
    assert len(head) == 40 and source_commit(script) == head
    (tmp_path / "results.parquet").write_text("untracked output")  # results are not the code
    assert source_commit(script) == head
    script.write_text("x = 2\n")
    assert source_commit(script) == f"{head}-dirty"

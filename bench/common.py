"""Shared setup of the benchmarks: the embedded model (fetched through the workflow if missing) and prompts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from biasprune.models import load_model  # noqa: E402
from biasprune.prompts import prompt_table  # noqa: E402
from biasprune.study import load_domain, load_names  # noqa: E402

MODEL = "smollm2-135m-instruct"
SUFFIX = (
    "Reply only with the number despite not having any details. Don't add any more comments after the number. "
    "We don't have any more data, so provide your best guess."
)


def embedded_folder() -> Path:
    """The converted embedded model's folder, fetched by the workflow's own rule when it is not there yet."""
    folder = ROOT / "resources" / "models" / MODEL
    if not folder.is_dir():
        snakemake = Path(sys.executable).parent / "snakemake"
        subprocess.run([str(snakemake), "--cores", "2", f"resources/models/{MODEL}"], cwd=ROOT, check=True)
    return folder


def embedded_model():
    """The converted embedded model (fetched when missing), loaded in float32 on the CPU with 2 threads."""
    folder = embedded_folder()
    torch.set_num_threads(2)
    return load_model(folder, device="cpu", dtype="float32")


def purchase_prompts(count: int) -> tuple[list[dict], object]:
    """The first `count` prompts of the purchase domain (all names of the first variation) and its answer spec."""
    domain = load_domain("purchase", ROOT / "resources" / "prompts")
    names = load_names(ROOT / "resources" / "prompts" / "names.tsv", ("White", "Black"))
    rows = prompt_table(domain, domain.variations[:1], names, ("White", "Black"), SUFFIX).to_pylist()
    return rows[:count], domain.answer


def timed(function, repeat: int = 1) -> float:
    """Best wall time of `repeat` calls (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best

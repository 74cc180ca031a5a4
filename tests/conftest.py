"""Shared fixtures: a tiny randomly initialised Llama with its own tokenizer (no network), and a
throwaway copy of the workflow to run Snakemake in."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Two test processes run torch at once (their own and their Snakemake jobs'): OpenMP's spinning idle threads
# then take the cores the other process needs. Sleeping ones: 1.9x one process's time for the pair instead of
# 3.5x (bench/thread_contention.py). Set before torch starts, here and in every job these tests launch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from biasprune.synthetic import (  # noqa: E402 (the library is found through the path above)
    CHATML_TEMPLATE,
    SHAPES,
    chatml_tokenizer,
    model_config,
    trained_tokenizer,
)
from biasprune.vocabulary import SCOPES  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
# What a fresh clone holds that a run needs (results, models and caches stay behind).
WORKFLOW_FILES = ("workflow", "config", "resources/prompts", "profiles")
# The (unit, method) score sets config/test-config.yaml runs (the slow tier, on the real model).
TEST_CONFIG_SETS = (("weights", "wanda"), ("heads", "name_attention"))
# Every method but greedy (the tiny-model chain of the fast tier: `tiny_study`).
TINY_SETS = (
    ("weights", "wanda"),
    ("neurons", "activation"),
    ("heads", "name_attention"),
    ("heads", "attribution"),
    ("directions", "mean_difference"),
    ("directions", "leace"),
)
# The tiny test model's geometry: 2 layers, 4 query heads sharing 2 key/value heads (GQA).
TINY_LLAMA = {
    key: value
    for key, value in SHAPES["tiny"].items()
    if key not in ("vocab_size", "max_position_embeddings")
}


# The modules that take minutes (each builds a chain, a cluster or a real-model study in a module or session
# fixture), longest first: `pytest -n 2 --dist loadfile --no-loadscope-reorder` (make test) hands a process
# a whole module at a time in this order, so the longest start first and the short ones fill the gaps.
LONGEST_FIRST = (
    "test_e2e",
    "test_tiny_chain",
    "test_qwen",
    "test_two_models",
    "test_gpu_check",
    "test_slurm",
    "test_workflow",
)


def pytest_collection_modifyitems(items):
    """Run the longest modules first (LONGEST_FIRST), the rest in their collected order."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def prompt_corpus() -> list[str]:
    return [path.read_text() for path in sorted((ROOT / "resources" / "prompts").iterdir())]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A small ChatML-style tokenizer, like SmolLM2's."""
    return chatml_tokenizer(ROOT / "resources" / "prompts")


def tiny_config(config_class, tokenizer, seed: int):
    """The tiny geometry for `tokenizer`, with the global torch seed set for the weights drawn next."""
    import torch

    torch.manual_seed(seed)
    return model_config(config_class, "tiny", tokenizer)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer):
    """A 2-layer Llama (4 query heads, 2 key/value heads: GQA) saved with its tokenizer, like a fetched model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(tiny_config(LlamaConfig, tiny_tokenizer, seed=0)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def readout_settings(
    mode="expected", batch_size=8, max_new_tokens=10, n=1, temperature=0.6, top_p=0.9
) -> dict:
    """A readout config section (as validated config gives it) for calling read_answers directly."""
    sample = {"n": n, "temperature": temperature, "top_p": top_p, "seed": 0}
    return {
        "mode": mode,
        "batch_size": batch_size,
        "use_prefix": True,
        "max_new_tokens": max_new_tokens,
        "max_answer_chars": 200,
        "sample": sample,
    }


def copy_workflow(destination: Path) -> Path:
    """A fresh-clone-like copy of the workflow (no results) to run Snakemake in."""
    for item in WORKFLOW_FILES:
        source, target = ROOT / item, destination / item
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.fixture
def workdir(tmp_path):
    return copy_workflow(tmp_path / "study")


def snakemake(workdir: Path, *args: str, check: bool = True, **popen) -> subprocess.CompletedProcess:
    """Run the real Snakemake CLI in `workdir`; output captured as text (`popen`: env, start_new_session)."""
    result = subprocess.run([SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def default_plan(tmp_path_factory) -> str:
    """`snakemake -n` of the default study in a fresh-clone-like copy (shared: several tests read one plan)."""
    return snakemake(copy_workflow(tmp_path_factory.mktemp("default-plan") / "study"), "-n").stdout


def planned_jobs(output: str) -> list[dict]:
    """Every job block of a Snakemake dry-run as {"rule", "threads", "resources": {name: text}} (Snakemake
    prints `threads:` only above one)."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, flags=re.MULTILINE))
        resources = dict(item.split("=", 1) for item in fields.get("resources", "").split(", ") if item)
        jobs.append({"rule": rule, "threads": int(fields.get("threads", 1)), "resources": resources})
    return jobs


def tiny_study(workdir: Path, tiny_llama_dir: Path, **changes) -> tuple[str, str]:
    """The test config on the tiny random Llama (a `local` model): the whole chain in seconds. `changes`
    replace top-level config sections. Returns the Snakemake arguments that select it (put them last)."""
    import yaml

    config = yaml.safe_load((workdir / "config/test-config.yaml").read_text())
    config["models"] = ["tiny"]
    config["model_registry"] = {"tiny": {"source": "local", "path": str(tiny_llama_dir), "device": "cpu"}}
    config["metrics"] = {"bootstrap": 200}
    config["scoring"] = {"weights": {"methods": ["wanda"]}, "neurons": {"methods": ["activation"]}}
    config["scoring"]["heads"] = {"methods": ["name_attention", "attribution"]}
    config["scoring"]["directions"] = {"methods": ["mean_difference", "leace"]}
    config["activations"] = {"attribution": True}
    # every scope, and every kind of control at the domain and cross scopes, on the tiny chain
    config["masks"] |= {"scopes": list(SCOPES), "random_seeds": 1, "matched_seeds": 1, "generic": True}
    config["masks"]["random_scopes"] = ["domain", "cross"]
    config.update(changes)
    (workdir / "config/tiny.yaml").write_text(yaml.safe_dump(config))
    return ("--configfile", "config/tiny.yaml")


@dataclass
class TinyRun:
    workdir: Path
    args: tuple[str, str]
    output: str  # Snakemake's stdout and stderr
    tables: dict  # {name: DataFrame} of results/tiny/metrics/*.parquet as the run left them


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_llama_dir) -> TinyRun:
    """One uninterrupted run of the whole chain on the tiny model (it takes minutes; tests read it and change
    only a copy, `copy_run`). Only tests/test_tiny_chain.py uses it, so one test process builds it."""
    import pandas as pd

    workdir = copy_workflow(tmp_path_factory.mktemp("tiny-run") / "study")
    args = tiny_study(workdir, tiny_llama_dir)
    result = snakemake(workdir, "--cores", "2", *args)
    tables = {
        path.stem: pd.read_parquet(path) for path in (workdir / "results/tiny/metrics").glob("*.parquet")
    }
    return TinyRun(workdir, args, result.stdout + result.stderr, tables)


def copy_run(run: TinyRun, destination: Path) -> Path:
    """A copy of a finished run's folder (results, Snakemake's records, the model's link) for a test that
    changes it: the shared run stays as it finished."""
    shutil.copytree(run.workdir, destination, symlinks=True)
    return destination


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry-run, as {rule: count}."""
    lines = output.split("Job stats:", 1)[1].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3_TEMPLATE = (
    "{{ '<|begin_of_text|>' }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


# Qwen2.5's split (single digits, unlike Llama-3's runs of up to three) and a ChatML template with a default
# system line of its own, as Qwen2.5's template writes one when the conversation has none.
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
QWEN2_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Tiny, a helpful assistant.<|im_end|>\n"
    "{% endif %}" + CHATML_TEMPLATE
)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    """A 2-layer Qwen2 (4 query heads over 2 key/value heads, random non-zero q/k/v biases) with a Qwen2.5-style
    tokenizer and template, saved like a fetched model."""
    import torch
    from tokenizers import Regex, pre_tokenizers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    split = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = trained_tokenizer(
        prompt_corpus(), split, 700, specials, "<|endoftext|>", "<|im_end|>", "<|endoftext|>", QWEN2_TEMPLATE
    )
    model = Qwen2ForCausalLM(tiny_config(Qwen2Config, tokenizer, seed=1))
    with torch.no_grad():
        for layer in model.model.layers:
            for name in ("q_proj", "k_proj", "v_proj"):
                getattr(layer.self_attn, name).bias.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llama3_style_tokenizer():
    """A tokenizer built like Llama-3's: its regex split, byte-level BPE, its special tokens and chat template."""
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    specials = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ]
    return trained_tokenizer(
        prompt_corpus(),
        split,
        2000,
        specials,
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|end_of_text|>",
        LLAMA3_TEMPLATE,
    )


def write_masks(path: Path, *args, **kwargs) -> dict:
    """`build_masks(unit, method, scope, scores, parameters, groups, ...)` written through the job's own
    `TensorWriter` to `path` with its manifest beside it (as the `masks` rule does); returns the manifest."""
    from biasprune.bits import TensorWriter
    from biasprune.masks import build_masks

    with TensorWriter(path.parent) as writer:
        manifest = build_masks(*args[:6], writer, *args[6:], **kwargs)
        writer.save(path)
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return manifest

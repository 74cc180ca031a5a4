"""Two model families through the whole chain on tiny random models: a Llama and a Qwen2 (q, k and v biases,
its own tokenizer and default system line), the authors' q_zero head removal (which must zero the query
bias too), and the comparison report that puts the two side by side."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import copy_workflow, job_counts, readout_settings, snakemake, tiny_study

from biasprune.maskfile import load_masks
from biasprune.models import ModelAdapter, load_model
from biasprune.readouts import read_answers
from biasprune.study import load_domain

MODELS = ("tiny", "tinyqwen")
# The comparison and one model's appendix (the other's is the tiny chain's, in test_workflow.py).
TARGETS = ("reports/comparison.html", "reports/tinyqwen/appendix.html")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_llama_dir, tiny_qwen2_dir):
    """The lean chain on both (heads/name_attention removed by q_zero; domain and cross masks, one matched
    control at the domain scope): the shared prompts, each model's chain, the comparison."""
    workdir = copy_workflow(tmp_path_factory.mktemp("two-models") / "study")
    args = tiny_study(workdir, tiny_llama_dir)
    config = workdir / args[1]
    data = yaml.safe_load(config.read_text())
    data["models"] = list(MODELS)
    data["model_registry"]["tinyqwen"] = {"source": "local", "path": str(tiny_qwen2_dir), "device": "cpu"}
    data["scoring"] = {"heads": {"methods": ["name_attention"]}}
    data["activations"] = {"attribution": False}
    data["evaluate"] = {"head_ablation": "q_zero"}
    data["masks"] |= {
        "scopes": ["domain", "cross"],
        "random_seeds": 0,
        "matched_seeds": 1,
        "generic": False,
        "random_scopes": ["domain"],
    }
    config.write_text(yaml.safe_dump(data))
    result = snakemake(workdir, "--cores", "2", *TARGETS, *args)
    return workdir, args, result.stdout + result.stderr


def test_both_models_run_every_stage_and_one_comparison_joins_them(run):
    workdir, args, output = run
    counts = job_counts(output)
    assert counts["comparison"] == 1 and counts["appendix"] == 1 and counts["model_check"] == 2
    assert counts["prompts"] == 2 and counts["answers"] == 4  # the prompts are shared, made once
    assert "Nothing to be done" in snakemake(workdir, "-n", *TARGETS, *args).stdout
    check = json.loads((workdir / "results/tinyqwen/model_check.json").read_text())
    assert check["architecture"] == "Qwen2ForCausalLM" and (check["n_heads"], check["n_kv_heads"]) == (4, 2)
    assert check["default_system_line"] is True
    html = (workdir / "reports/comparison.html").read_text()
    assert "<h1>Model comparison: tiny, tinyqwen</h1>" in html
    assert "<th>tiny</th><th>tinyqwen</th>" in html  # the findings, one column per model in order
    assert html.count("data:image/png;base64,") == 3 and "http" not in html  # self-contained
    for name in ("baseline", "findings", "transfer", "placement"):
        table = pd.read_csv(workdir / f"reports/comparison/{name}.csv")
        assert table["model"].drop_duplicates().tolist() == list(MODELS), name
        own = (
            pd.read_parquet(workdir / f"results/tinyqwen/metrics/{name}.parquet")
            if name != "placement"
            else None
        )
        if own is not None:  # each model's own rows, unchanged
            assert (table["model"] == "tinyqwen").sum() == len(own), name


def test_q_zero_in_the_chain_zeroes_the_query_rows_and_their_bias(run, tiny_qwen2_dir):
    """The chain's evaluated answers under a q_zero head mask on Qwen2 equal a model edited by hand: the
    heads' rows of q_proj's weight and of its bias set to zero. Cross-fitted, each fold's mask is read on that
    fold's names: both folds are checked, each on a freshly loaded model."""
    workdir, _, _ = run
    manifest, masks = load_masks(workdir / "results/tinyqwen/masks/heads/name_attention/domain.safetensors")
    prompts = pq.read_table(workdir / "results/prompts/purchase.parquet").to_pylist()
    answer = load_domain("purchase", workdir / "resources/prompts").answer
    settings = readout_settings() | {"expected": {"min_coverage": 0.0}}
    evaluated = pd.read_parquet(
        workdir / "results/tinyqwen/eval/heads/name_attention/domain/purchase.parquet"
    )
    base = pd.read_parquet(workdir / "results/tinyqwen/answers/base/purchase.parquet").set_index("prompt_id")
    assert sorted(manifest["folds"]) == ["A", "B"]
    moved = []
    for fold, entry in manifest["folds"].items():
        model, tokenizer = load_model(tiny_qwen2_dir, device="cpu")
        adapter = ModelAdapter.of(model)
        setting = next(setting for condition, setting in masks if condition == f"purchase@{fold}")
        heads = masks[f"purchase@{fold}", setting]
        with torch.no_grad():
            for layer, pruned in heads.items():
                q_proj = adapter.linear(int(layer), "q_proj")
                assert q_proj.bias is not None and q_proj.bias.abs().sum() > 0
                for head in torch.nonzero(pruned).flatten().tolist():
                    rows = slice(head * adapter.head_dim, (head + 1) * adapter.head_dim)
                    q_proj.weight[rows] = 0
                    q_proj.bias[rows] = 0
        own = [row for row in prompts if row["name"] in set(entry["names"])]
        assert own and len(own) < len(prompts)
        expected = read_answers(model, tokenizer, own, answer, settings)["value"]
        chosen = evaluated[
            (evaluated["condition"] == "purchase")
            & (evaluated["setting"] == setting)
            & (evaluated["control"] == "pruned")
            & (evaluated["fold"] == fold)
        ]
        assert chosen["prompt_id"].tolist() == [row["prompt_id"] for row in own]
        np.testing.assert_allclose(chosen["value"], expected, rtol=1e-5)
        unpruned = base.loc[[row["prompt_id"] for row in own], "value"].to_numpy()
        pruned_any = sum(int(value.sum()) for value in heads.values()) > 0
        moved.append(pruned_any and np.abs(unpruned - np.array(expected)).max() > 1e-3)
    assert any(moved)  # some fold prunes a head, and its mask does change the answers

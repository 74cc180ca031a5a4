"""Evaluation of masks: which prompts each condition reads, random controls, answers under a mask, damage."""

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import readout_settings
from scipy.stats import entropy

from biasprune.ablation import Mask, head_means, masked
from biasprune.damage import damage_table, mean_kl
from biasprune.evaluate import Evaluation, evaluate_domain, evaluations, mask_of
from biasprune.models import ModelAdapter, load_model
from biasprune.readouts import ANSWER_SCHEMA, read_answers
from biasprune.specs import Answer
from biasprune.vocabulary import GENERIC, MATCHED, PRUNED, RANDOM

ANSWER = Answer(prefix="$", grid=(10.0, 20.0, 50.0, 100.0, 200.0), unit="USD", range=(1, 1000))
SETTING = "share=0.25"


def manifest(scope, conditions, seeds=(0, 1), matched=(), generic=False, empty=()):
    """A heads manifest; conditions in `empty` prune nothing, the others one head."""
    return {
        "unit": "heads",
        "scope": scope,
        "settings": [SETTING],
        "random_seeds": list(seeds),
        "matched_seeds": list(matched),
        "generic": generic,
        "conditions": {
            name: {
                "selection": selection,
                "counts": {SETTING: {"0": 0 if name in empty else 1}},
                "generic": {SETTING: None if name in empty else 1},
            }
            for name, selection in conditions.items()
        },
        "shapes": {"0": [4], "1": [4]},
    }


PLANS = {
    "variation": {
        "purchase/chair": {"purchase": ["chair"]},
        "purchase/car": {"purchase": ["car"]},
        "hiring/lawyer": {"hiring": ["lawyer"]},
    },
    "loo": {"purchase/-chair": {"purchase": ["car"]}, "purchase/-car": {"purchase": ["chair"]}},
    "domain": {"purchase": {"purchase": ["chair", "car"]}, "hiring": {"hiring": ["lawyer"]}},
    "cross": {"-purchase": {"hiring": ["lawyer"]}, "-hiring": {"purchase": ["chair", "car"]}},
}


def own(plan):
    """(condition, variations, in-sample) of the masks themselves (random controls left out)."""
    return {(e.condition, e.variations, e.in_sample) for e in plan if e.control == PRUNED}


def test_each_scope_reads_only_the_prompts_its_conditions_need():
    variations = ["chair", "car"]
    plan = {scope: evaluations(manifest(scope, PLANS[scope]), "purchase", variations) for scope in PLANS}
    assert own(plan["variation"]) == {("purchase/chair", ("chair",), True), ("purchase/car", ("car",), True)}
    assert own(plan["loo"]) == {("purchase/-chair", ("chair",), False), ("purchase/-car", ("car",), False)}
    both = ("chair", "car")
    assert own(plan["domain"]) == {("purchase", both, True), ("hiring", both, False)}
    assert own(plan["cross"]) == {("-purchase", both, False)}  # held out only, by default
    in_sample = evaluations(manifest("cross", PLANS["cross"]), "purchase", variations, cross_in_sample=True)
    assert own(in_sample) == {("-purchase", both, False), ("-hiring", both, True)}
    # Every mask is followed by one random control per seed, evaluated on the same prompts.
    for scope_plan in plan.values():
        assert len(scope_plan) == 3 * len(own(scope_plan))
        controls = [e for e in scope_plan if e.control == RANDOM]
        assert {(e.condition, e.seed) for e in controls} == {
            (condition, seed) for condition, *_ in own(scope_plan) for seed in (0, 1)
        }


def test_every_control_follows_its_mask_and_an_empty_mask_has_none():
    info = manifest("domain", PLANS["domain"], seeds=(0,), matched=(0, 1, 2), generic=True, empty=("hiring",))
    plan = [(e.condition, e.control, e.seed) for e in evaluations(info, "purchase", ["chair", "car"])]
    assert plan == [
        ("purchase", PRUNED, -1),
        ("purchase", RANDOM, 0),
        ("purchase", MATCHED, 0),
        ("purchase", MATCHED, 1),
        ("purchase", MATCHED, 2),
        ("purchase", GENERIC, -1),
        ("hiring", PRUNED, -1),  # vacuous: evaluated once (its rows are marked), never controlled
    ]


def test_matched_controls_draw_from_the_pool_and_generic_is_read_from_the_file():
    heads = {"0": torch.tensor([True, False, False, False]), "1": torch.tensor([False, False, True, True])}
    pool = {"0": torch.tensor([False, True, True, False]), "1": torch.tensor([True, True, False, False])}
    generic = {"0": torch.tensor([False, False, False, True]), "1": torch.tensor([True, True, False, False])}

    class File(dict):
        def part(self, condition, setting, part):
            return {"pool": pool, "generic": generic}[part]

    masks = File({("purchase", SETTING): heads})
    info = manifest("domain", PLANS["domain"], matched=range(10), generic=True)
    for seed in range(10):
        drawn = mask_of(Evaluation("purchase", SETTING, MATCHED, seed, (), False), info, masks).keys
        assert sum(int(v.sum()) for v in drawn.values()) == 3  # heads: the mask's total, from the rank band
        assert not any((drawn[k] & ~pool[k]).any() for k in drawn)
        uniform = mask_of(Evaluation("purchase", SETTING, RANDOM, seed, (), False), info, masks).keys
        assert any(not torch.equal(uniform[k], drawn[k]) for k in drawn) or seed  # seeds differ by control
    assert mask_of(Evaluation("purchase", SETTING, GENERIC, -1, (), False), info, masks).keys is generic


def test_random_controls_keep_counts_per_layer_and_are_the_same_in_every_job():
    heads = {"0": torch.tensor([True, True, False, False]), "1": torch.tensor([False, False, False, True])}
    masks = {("purchase", SETTING): heads, ("hiring", SETTING): heads}
    info = manifest("domain", PLANS["domain"])
    drawn = {}
    for condition in ("purchase", "hiring"):
        for seed in range(8):
            evaluation = Evaluation(condition, SETTING, RANDOM, seed, (), False)
            mask = mask_of(evaluation, info, masks)
            again = mask_of(evaluation, info, masks)
            assert all(torch.equal(mask.keys[k], again.keys[k]) for k in heads)
            assert {k: int(v.sum()) for k, v in mask.keys.items()} == {"0": 2, "1": 1}
            drawn[condition, seed] = torch.cat([mask.keys["0"], mask.keys["1"]])
    own = mask_of(Evaluation("purchase", SETTING, PRUNED, -1, (), False), info, masks)
    assert own.keys is heads
    assert len({tuple(v.tolist()) for v in drawn.values()}) > 4  # seeds and conditions draw differently


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(tiny_llama_dir, device="cpu", dtype="float32")


def prompt_rows():
    rows = []
    for variation in ("chair", "car"):
        for name, race in (("Emily", "White"), ("Todd", "White"), ("Jamal", "Black"), ("Ebony", "Black")):
            rows.append(
                {
                    "prompt_id": f"{variation}-{name}",
                    "domain": "purchase",
                    "variation": variation,
                    "name": name,
                    "race": race,
                    "text": f"I want to buy a {variation} from {name}. Offer?",
                }
            )
    return rows


def test_answers_under_a_mask_equal_a_direct_masked_readout_and_empty_masks_reuse_the_base(tiny):
    model, tokenizer = tiny
    settings = readout_settings(batch_size=3)
    prompts = prompt_rows()
    base = pa.Table.from_pydict(
        read_answers(model, tokenizer, prompts, ANSWER, settings), schema=ANSWER_SCHEMA
    )
    state = {key: value.clone() for key, value in model.state_dict().items()}
    heads = {"0": torch.tensor([True, False, False, True]), "1": torch.tensor([False, True, False, False])}
    none = {"0": torch.zeros(4, dtype=torch.bool), "1": torch.zeros(4, dtype=torch.bool)}
    info = manifest("domain", {"purchase": {"purchase": ["chair", "car"]}, "hiring": {"hiring": ["lawyer"]}})
    masks = {("purchase", SETTING): heads, ("hiring", SETTING): none}
    table = evaluate_domain(model, tokenizer, info, masks, prompts, base, ANSWER, settings).to_pandas()
    assert len(table) == 2 * 3 * len(prompts)  # 2 conditions x (mask + 2 seeds) x every prompt
    own = table[(table["condition"] == "purchase") & (table["control"] == PRUNED)]
    with masked(model, Mask("heads", heads), "hooks"):  # the other way of applying the mask
        direct = read_answers(model, tokenizer, prompts, ANSWER, readout_settings(batch_size=8))
    np.testing.assert_allclose(own["value"], direct["value"], rtol=1e-4)
    assert not np.allclose(own["value"], base.column("value").to_numpy(), rtol=1e-4)
    assert own["in_sample"].all() and (own["n_pruned"] == 3).all()
    empty = table[table["condition"] == "hiring"]
    assert (empty["n_pruned"] == 0).all() and not empty["in_sample"].any()
    for _, part in empty.groupby(["control", "seed"]):  # the unpruned answers, bit for bit
        assert part["value"].tolist() == base.column("value").to_pylist()
    controls = table[(table["condition"] == "purchase") & (table["control"] == RANDOM)]
    assert set(controls["seed"]) == {0, 1} and (controls["n_pruned"] == 3).all()
    assert not np.allclose(controls["value"].to_numpy()[: len(prompts)], own["value"], rtol=1e-4)
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_mean_kl_against_scipy():
    generator = torch.Generator().manual_seed(0)
    base = [torch.randn(n, 7, generator=generator).log_softmax(-1) for n in (3, 5)]
    pruned = [torch.randn(n, 7, generator=generator).log_softmax(-1) for n in (3, 5)]
    expected = np.mean(
        [
            entropy(p.exp().numpy(), q.exp().numpy())
            for ps, qs in zip(base, pruned, strict=True)
            for p, q in zip(ps, qs, strict=True)
        ]
    )
    assert mean_kl(base, pruned) == pytest.approx(expected, rel=1e-5)
    assert mean_kl(base, base) == 0


def test_damage_is_zero_without_pruning_and_positive_with_it(tiny):
    model, tokenizer = tiny
    heads = {"0": torch.tensor([True, False, False, True]), "1": torch.tensor([False, True, False, False])}
    none = {"0": torch.zeros(4, dtype=torch.bool), "1": torch.zeros(4, dtype=torch.bool)}
    info = manifest("domain", {"purchase": {}, "hiring": {}}, seeds=(0,))
    texts = ["What is the capital of France?", "Name three colours."]
    table = damage_table(
        model, tokenizer, info, {("purchase", SETTING): heads, ("hiring", SETTING): none}, texts
    )
    rows = {(r["condition"], r["control"]): r for r in table.to_pylist()}
    assert rows["hiring", PRUNED]["kl"] == 0 and rows["hiring", RANDOM]["kl"] == 0
    assert rows["purchase", PRUNED]["kl"] > 0 and rows["purchase", RANDOM]["kl"] > 0
    assert rows["purchase", PRUNED]["n_pruned"] == 3


def test_head_means_are_the_mean_o_proj_input_over_real_tokens(tiny):
    model, tokenizer = tiny
    texts = ["What is the capital of France?", "Hi", "Name three colours please."]
    means = head_means(model, tokenizer, texts, batch_size=2)  # padded batches
    adapter, inputs = ModelAdapter.of(model), []
    o_proj = adapter.linear(1, "o_proj")
    handle = o_proj.register_forward_pre_hook(lambda module, args: inputs.append(args[0][0]))
    try:
        for text in texts:  # one unpadded prompt at a time
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, return_dict=False
            )
            with torch.no_grad():
                model(torch.tensor([ids]))
    finally:
        handle.remove()
    torch.testing.assert_close(means["1"], torch.cat(inputs).mean(0), atol=1e-5, rtol=1e-4)


def test_a_fold_mask_reads_only_the_names_that_did_not_select_it_and_each_name_once(tiny):
    """Cross-fitted: fold A's mask (selected without Emily and Jamal) reads only their prompts and fold B's
    only Todd's and Ebony's, each exactly as a direct readout under that mask; the all-names mask is not
    evaluated; an empty fold mask's controls are the unpruned answers, on the same names as the mask."""
    model, tokenizer = tiny
    settings = readout_settings(batch_size=3)
    prompts = prompt_rows()
    base = pa.Table.from_pydict(
        read_answers(model, tokenizer, prompts, ANSWER, settings), schema=ANSWER_SCHEMA
    )
    heads = {
        "A": {"0": torch.tensor([True, False, False, True]), "1": torch.tensor([False, True, False, False])},
        "B": {"0": torch.tensor([False, True, True, False]), "1": torch.tensor([False, False, False, True])},
    }
    none = {"0": torch.zeros(4, dtype=torch.bool), "1": torch.zeros(4, dtype=torch.bool)}
    info = manifest("domain", {"purchase": {"purchase": ["chair", "car"]}}, seeds=(0,))
    selected = {"A": ["Emily", "Jamal"], "B": ["Ebony", "Todd"]}
    info["folds"] = {
        fold: {"names": names, "conditions": manifest("domain", {"purchase": {}}, seeds=(0,))["conditions"]}
        for fold, names in selected.items()
    }
    info["folds"]["B"]["conditions"]["purchase"]["counts"][SETTING] = {"0": 0}  # B's mask: empty
    masks = {
        ("purchase", SETTING): heads["A"],
        ("purchase@A", SETTING): heads["A"],
        ("purchase@B", SETTING): none,
    }
    table = evaluate_domain(model, tokenizer, info, masks, prompts, base, ANSWER, settings).to_pandas()
    for (control, _seed), part in table.groupby(["control", "seed"]):
        assert sorted(part["prompt_id"]) == sorted(row["prompt_id"] for row in prompts), control  # once each
    for fold, names in selected.items():
        rows = table[(table["fold"] == fold)]
        assert rows["prompt_id"].str.split("-").str[1].isin(names).all()  # only the names it held out
    own = table[(table["control"] == PRUNED) & (table["fold"] == "A")].set_index("prompt_id")
    held_out = [row for row in prompts if row["name"] in selected["A"]]
    with masked(model, Mask("heads", heads["A"]), "hooks"):
        direct = read_answers(model, tokenizer, held_out, ANSWER, readout_settings(batch_size=8))
    np.testing.assert_allclose(
        own.loc[[row["prompt_id"] for row in held_out], "value"], direct["value"], rtol=1e-4
    )
    base_value = dict(
        zip(base.column("prompt_id").to_pylist(), base.column("value").to_pylist(), strict=True)
    )
    empty = table[table["fold"] == "B"]
    assert set(empty["control"]) == {PRUNED, RANDOM} and (empty["n_pruned"] == 0).all()
    assert empty["value"].tolist() == [base_value[p] for p in empty["prompt_id"]]


def test_a_folds_generic_control_equal_to_its_mask_is_read_as_the_mask_when_another_folds_is_stored():
    """Fold A stores its generic control, fold B's equals B's mask (not stored): both folds read a generic
    control, B's being B's mask, so the control covers every name; where no fold stores one, none is read."""
    info = manifest("domain", {"purchase": {"purchase": ["chair", "car"]}}, seeds=(), generic=True)
    parts = {
        fold: manifest("domain", {"purchase": {}}, seeds=(), generic=True)["conditions"] for fold in "AB"
    }
    parts["B"]["purchase"]["generic"][SETTING] = "identical"
    info["folds"] = {
        "A": {"names": ["Emily"], "conditions": parts["A"]},
        "B": {"names": ["Todd"], "conditions": parts["B"]},
    }
    plan = evaluations(info, "purchase", ["chair", "car"])
    assert sorted((e.fold, e.control) for e in plan) == [
        ("A", GENERIC),
        ("A", PRUNED),
        ("B", GENERIC),
        ("B", PRUNED),
    ]
    heads = {"0": torch.tensor([True, False, False, False]), "1": torch.tensor([False, False, True, False])}

    class File(dict):
        def part(self, condition, setting, part):
            raise AssertionError("B's generic control is not stored")

    generic_b = next(e for e in plan if (e.fold, e.control) == ("B", GENERIC))
    assert mask_of(generic_b, info, File({("purchase@B", SETTING): heads})).keys is heads
    parts["A"]["purchase"]["generic"][SETTING] = "identical"
    assert {e.control for e in evaluations(info, "purchase", ["chair", "car"])} == {PRUNED}

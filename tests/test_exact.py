"""The exact readout: known masses on a hand-set model, a brute-force enumeration of the sampler's tree on a
peaked tiny model, and (slow tier) agreement with 4,000 draws of the project's sampler on the real model."""

import math
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_LLAMA, readout_settings
from transformers import LlamaConfig, LlamaForCausalLM

from biasprune.decoding import generate_tokens
from biasprune.exact import exact_distributions, expected_value, from_tree
from biasprune.leading import NOT_LEADING, _probed, leading_state, settled
from biasprune.parse import OUT_OF_RANGE, parse_number
from biasprune.readouts import ANSWER_SCHEMA, read_answers
from biasprune.specs import Answer
from biasprune.tokens import chat_prompt

TEMPERATURE, TOP_P = 0.6, 0.9


def markov_model(tokenizer, chain: dict[int, dict[int, float]], temperature: float = TEMPERATURE):
    """A Llama whose next-token distribution depends on the current token only, set by hand.

    Attention and MLP outputs are zeroed, so the residual stream is the token's embedding: a one-hot slot
    per token of `chain`. The unembedding reads the slot, with logits T * log p so that the sampler's
    softmax(logits / T) is exactly `chain[token]`; other tokens get log-probability -60."""
    config = LlamaConfig(
        **TINY_LLAMA,
        vocab_size=len(tokenizer),
        max_position_embeddings=256,
        rms_norm_eps=1e-12,  # the norm's scale exact to float32 rounding
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    hidden = config.hidden_size
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for slot, (token, successors) in enumerate(chain.items()):
            model.model.embed_tokens.weight[token, slot] = 1.0
            log_p = torch.full((len(tokenizer),), -60.0)
            for successor, p in successors.items():
                log_p[successor] = math.log(p)
            # RMSNorm turns the one-hot into sqrt(hidden) at the slot
            model.lm_head.weight[:, slot] = temperature * log_p / math.sqrt(hidden)
    return model


def test_a_hand_set_model_gives_its_masses_exactly(tiny_tokenizer):
    ids = {
        text: tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        for text in ("$", "1", "2", "00", "I")
    }
    assert all(len(tokens) == 1 for tokens in ids.values())
    dollar, one, two, zeros, refusal = (ids[text][0] for text in ("$", "1", "2", "00", "I"))
    eos = tiny_tokenizer.eos_token_id
    # $ -> 1 (2/3) | I (1/3); 1 -> 2; 12 -> end (1/2) | 00 (1/2); 1200 -> end.
    chain = {
        dollar: {one: 2 / 3, refusal: 1 / 3},
        one: {two: 1.0},
        two: {eos: 0.5, zeros: 0.5},
        zeros: {eos: 1.0},
    }
    model = markov_model(tiny_tokenizer, chain)
    chat = chat_prompt(tiny_tokenizer, "What should I offer Jamal?", "$")
    (found,) = exact_distributions(model, tiny_tokenizer, [chat], temperature=TEMPERATURE, top_p=TOP_P)
    assert found.values == pytest.approx({12.0: 1 / 3, 1200.0: 1 / 3}, abs=1e-6)
    assert found.invalid == pytest.approx({NOT_LEADING: 1 / 3}, abs=1e-6)
    assert found.unexplored < 1e-6 and found.nodes == 3  # "1", "12" and "1200" were run, nothing else
    # The project's sampler on the same model: 3,000 draws land on the thirds within Monte Carlo error.
    tokens = generate_tokens(
        model, tiny_tokenizer, [chat], 3000, 4, TEMPERATURE, TOP_P, torch.Generator().manual_seed(0)
    )
    texts = [tiny_tokenizer.decode(row, skip_special_tokens=True) for row in tokens.tolist()]
    shares = np.array([np.mean([t == "12" for t in texts]), np.mean([t == "1200" for t in texts])])
    assert np.abs(shares - 1 / 3).max() < 4 * math.sqrt(2 / 9 / 3000)


def thirds_model(tokenizer):
    """The hand-set chain after "$": 12 (1/3), 1200 (1/3), a refusal "I" (1/3); "12" ends or grows by 1/2."""
    ids = {
        text: tokenizer(text, add_special_tokens=False)["input_ids"][0] for text in ("$", "1", "2", "00", "I")
    }
    eos = tokenizer.eos_token_id
    chain = {
        ids["$"]: {ids["1"]: 2 / 3, ids["I"]: 1 / 3},
        ids["1"]: {ids["2"]: 1.0},
        ids["2"]: {eos: 0.5, ids["00"]: 0.5},
        ids["00"]: {eos: 1.0},
    }
    return markov_model(tokenizer, chain)


def test_the_exact_answers_row_carries_the_distribution_and_its_masses(tiny_tokenizer):
    model = thirds_model(tiny_tokenizer)
    rows = [{"prompt_id": "p0", "text": "What should I offer Jamal?"}]
    settings = readout_settings("exact")

    def read(answer_range=(1, 1e6), **exact):
        answer = Answer(unit="USD", prefix="$", range=answer_range, grid=(10.0,))
        columns = read_answers(model, tiny_tokenizer, rows, answer, {**settings, "exact": exact})
        return {name: values[0] for name, values in columns.items()}

    row = read()
    assert row["valid"] and row["reason"] == "ok" and row["value"] == pytest.approx((12 + 1200) / 2)
    assert row["support"] == [12.0, 1200.0] and row["probs"] == pytest.approx([1 / 3, 1 / 3], abs=1e-6)
    assert row["invalid_reasons"] == [NOT_LEADING] and row["mass_invalid"] == pytest.approx(1 / 3, abs=1e-6)
    assert row["mass_unexplored"] < 1e-6 and row["text"] is None
    # 1200 outside the domain's range: its mass moves to out_of_range, the value is 12
    row = read(answer_range=(1, 1000))
    assert row["value"] == pytest.approx(12) and row["support"] == [12.0]
    assert dict(zip(row["invalid_reasons"], row["invalid_probs"], strict=True)) == pytest.approx(
        {NOT_LEADING: 1 / 3, OUT_OF_RANGE: 1 / 3}, abs=1e-6
    )
    # a budget of one position with 50 tail draws: nothing unexplored, the sampled mass and the mean's SE
    row = read(max_nodes=1, tail_draws=50)
    assert row["mass_unexplored"] == 0 and row["mass_sampled"] == pytest.approx(2 / 3, abs=1e-6)
    assert sum(row["probs"]) + row["mass_invalid"] == pytest.approx(1.0, abs=1e-9)
    share = row["probs"][0] / (2 / 3)  # the draws' share of 12
    assert row["value"] == pytest.approx(12 * share + 1200 * (1 - share))
    assert row["value_se"] == pytest.approx(1188 * math.sqrt(share * (1 - share) * 50 / 49 / 50), rel=1e-6)
    assert read()["value_se"] == 0  # nothing was left open
    # below the valid-mass floor the prompt is invalid, its distribution kept
    row = read(min_valid_mass=0.7)
    assert (
        not row["valid"] and row["reason"] == "low_mass" and row["value"] is None and len(row["support"]) == 2
    )


@pytest.mark.parametrize(
    "pieces, answer_range, expected",
    [
        (("1", "2"), (1, 1e6), (12.0, "ok")),
        (("1", "2", "00"), (1, 1000), (None, OUT_OF_RANGE)),  # 1200: above the range in every readout
        (("5", "k"), (1, 1e6), (5000.0, "ok")),  # a scale word
        (("5", "k"), (1, 1000), (None, OUT_OF_RANGE)),
    ],
)
def test_sample_greedy_and_exact_classify_one_answer_alike(tiny_tokenizer, pieces, answer_range, expected):
    """A hand-set model that gives one answer with certainty: the sampler, greedy decoding and the exact
    readout read the same value and reason from it (one parser, one range rule)."""
    ids = [tiny_tokenizer(piece, add_special_tokens=False)["input_ids"] for piece in ("$", *pieces)]
    assert all(len(tokens) == 1 for tokens in ids)
    path = [tokens[0] for tokens in ids] + [tiny_tokenizer.eos_token_id]
    model = markov_model(tiny_tokenizer, {a: {b: 1.0} for a, b in pairwise(path)})
    rows = [{"prompt_id": "p0", "text": "What should I offer Jamal?"}]
    answer = Answer(unit="USD", prefix="$", range=answer_range, grid=(10.0,))
    read = {
        mode: read_answers(model, tiny_tokenizer, rows, answer, readout_settings(mode, n=3))
        for mode in ("sample", "greedy", "exact")
    }
    assert read["sample"]["text"] == ["".join(pieces)] * 3 and read["greedy"]["text"] == ["".join(pieces)]
    for mode, columns in read.items():
        assert (columns["value"][0], columns["reason"][0]) == expected, mode
    if expected[0] is not None:
        assert read["exact"]["support"] == [[expected[0]]]
    elif expected[1] == OUT_OF_RANGE:
        assert read["exact"]["invalid_reasons"] == [[OUT_OF_RANGE]]


def test_exact_reads_the_leading_number_where_the_sampler_reads_the_first(tiny_tokenizer):
    """The estimands differ on an answer that starts with words: the sampler's parser (like the paper's)
    reads a number anywhere in it, the exact readout only a number the answer starts with (it stops at the
    first word: `no_leading_number`, whatever follows)."""
    ids = [
        tiny_tokenizer(piece, add_special_tokens=False)["input_ids"][0]
        for piece in ("$", "I", " ", "5", "00")
    ]
    path = [*ids, tiny_tokenizer.eos_token_id]
    model = markov_model(tiny_tokenizer, {a: {b: 1.0} for a, b in pairwise(path)})
    rows = [{"prompt_id": "p0", "text": "What should I offer Jamal?"}]
    answer = Answer(unit="USD", prefix="$", range=(1, 1e6), grid=(10.0,))
    sample = read_answers(model, tiny_tokenizer, rows, answer, readout_settings("sample"))
    exact = read_answers(model, tiny_tokenizer, rows, answer, readout_settings("exact"))
    assert sample["text"] == ["I 500"] and (sample["value"], sample["reason"]) == ([500.0], ["ok"])
    assert (exact["value"], exact["reason"]) == ([None], [NOT_LEADING])


def peaked_model(tiny_llama_dir, tokenizer, scale=20.0):
    """The tiny random model made to answer in digits with peaked distributions: digit and separator tokens
    keep their unembedding rows, scaled, the end token its own; every other token's logit is lowered by 30."""
    model = LlamaForCausalLM.from_pretrained(tiny_llama_dir).eval()
    keep = torch.zeros(len(tokenizer), dtype=torch.bool)
    for token in range(len(tokenizer)):
        piece = tokenizer.decode([token])
        keep[token] = piece.isdigit() or piece == ","
    with torch.no_grad():
        model.lm_head.weight[keep] *= scale
    keep[tokenizer.eos_token_id] = True  # unscaled: an answer ends now and then
    bias = torch.where(keep, 0.0, -30.0)
    model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + bias)
    return model


def brute_force(model, tokenizer, chat: str, temperature: float, top_p: float, depth: int) -> dict:
    """The sampler's tree walked to the end of every branch with a full forward per path (no cache, no
    tree attention, no early end of a number): value -> probability, None -> invalid probability."""
    prompt = tokenizer(chat, add_special_tokens=False)["input_ids"]
    result: dict = {}

    def walk(path: list[int], mass: float) -> None:
        text = tokenizer.decode(path, skip_special_tokens=True)
        done = len(path) == depth or (path and path[-1] == tokenizer.eos_token_id)
        if not done:
            with torch.no_grad():
                logits = model(torch.tensor([prompt + path])).logits[0, -1].double() / temperature
            p = logits.softmax(-1)
            ordered, order = p.sort(descending=True)
            kept = (ordered.cumsum(0) - ordered) <= top_p
            ordered, order = ordered[kept] / ordered[kept].sum(), order[kept]
            for token, weight in zip(order.tolist(), ordered.tolist(), strict=True):
                walk([*path, token], mass * weight)
            return
        stripped = text.lstrip().removeprefix("$").lstrip()
        value = parse_number(text).value if stripped[:1].isdigit() else None
        result[value] = result.get(value, 0.0) + mass

    walk([], 1.0)
    return result


@pytest.mark.parametrize(("temperature", "top_p"), [(0.6, 0.9), (1.0, 0.7)])
def test_the_enumeration_equals_a_brute_force_walk_of_the_sampler_tree(
    tiny_llama_dir, tiny_tokenizer, temperature, top_p
):
    model = peaked_model(tiny_llama_dir, tiny_tokenizer)
    chats = [chat_prompt(tiny_tokenizer, f"What should I offer {name}?", "$") for name in ("Jamal", "Greg")]
    found = exact_distributions(
        model,
        tiny_tokenizer,
        chats,
        temperature=temperature,
        top_p=top_p,
        epsilon=1e-12,
        max_nodes=4000,
        width=5,
        max_new_tokens=4,
    )
    for chat, distribution in zip(chats, found, strict=True):
        expected = brute_force(model, tiny_tokenizer, chat, temperature, top_p, depth=4)
        invalid = expected.pop(None, 0.0)
        assert len(expected) >= 3  # several values: the tree branches
        assert distribution.values == pytest.approx(expected, abs=1e-6)
        assert distribution.invalid_mass == pytest.approx(invalid, abs=1e-6)
        assert distribution.unexplored < 1e-9


def test_an_exhausted_node_budget_reports_the_open_mass(tiny_llama_dir, tiny_tokenizer):
    model = peaked_model(tiny_llama_dir, tiny_tokenizer)
    chat = chat_prompt(tiny_tokenizer, "What should I offer Jamal?", "$")
    (full,) = exact_distributions(model, tiny_tokenizer, [chat], epsilon=1e-12, max_nodes=4000, width=4)
    (cut,) = exact_distributions(model, tiny_tokenizer, [chat], epsilon=1e-12, max_nodes=4, width=4)
    assert cut.nodes == 4 and cut.unexplored > 0.01
    assert cut.valid_mass + cut.invalid_mass + cut.unexplored == pytest.approx(1.0, abs=1e-9)
    # what was closed is closed for good: every value's mass is at most its full mass
    assert all(mass <= full.values[value] + 1e-9 for value, mass in cut.values.items())


def test_tail_draws_sample_what_the_budget_left_open(tiny_tokenizer):
    """The hand-set chain cut after one node: "12" stays open with mass 2/3 and ends as 12 or 1200 with
    probability 1/2 each; every tail draw carries (2/3) / draws."""
    model = thirds_model(tiny_tokenizer)
    chat = chat_prompt(tiny_tokenizer, "What should I offer Jamal?", "$")
    draws = 400
    (head,) = exact_distributions(
        model,
        tiny_tokenizer,
        [chat],
        max_nodes=1,
        tail_draws=draws,
        generator=torch.Generator().manual_seed(3),
    )
    assert head.values == {} and head.unexplored == pytest.approx(2 / 3, abs=1e-6)
    assert {value for value, _ in head.tail} == {12.0, 1200.0} and len(head.tail) == draws
    twelves = sum(value == 12.0 for value, _ in head.tail)
    assert abs(twelves / draws - 0.5) < 4 * math.sqrt(0.25 / draws)
    whole = head.estimated()
    assert whole.values == pytest.approx(
        {12.0: 2 / 3 * twelves / draws, 1200.0: 2 / 3 * (draws - twelves) / draws}, abs=1e-6
    )
    assert whole.invalid == pytest.approx({NOT_LEADING: 1 / 3}, abs=1e-6) and whole.unexplored == 0
    # the standard error by hand: all valid, so it is the draws' SD over sqrt(draws)
    values = np.array([value for value, _ in head.tail])
    assert head.mean_se() == pytest.approx(values.std(ddof=1) / math.sqrt(draws), rel=1e-6)
    # without tail draws the open mass stays unexplored and the head is the answer
    (plain,) = exact_distributions(model, tiny_tokenizer, [chat], max_nodes=1)
    assert (
        plain.tail == [] and plain.estimated() is plain and plain.unexplored == pytest.approx(2 / 3, abs=1e-6)
    )
    assert math.isnan(plain.mean_se())  # no draws: the open mass has no estimate, so neither has the mean


def test_the_sampled_tail_is_unbiased_for_the_whole_distribution(tiny_llama_dir, tiny_tokenizer):
    """A budget of 32 positions (of the 84 the whole tree takes) leaves 17% of the peaked model's answers
    open; head + tail estimates the full enumeration's valid mass and mean without bias: a large draw lands
    within 4 SE, and over 40 seeds of 40 draws the estimates centre on the truth and the reported variance
    matches their spread on average."""
    model = peaked_model(tiny_llama_dir, tiny_tokenizer)
    chat = chat_prompt(tiny_tokenizer, "What should I offer Jamal?", "$")
    (full,) = exact_distributions(
        model, tiny_tokenizer, [chat], epsilon=1e-12, max_nodes=4000, width=16, max_new_tokens=4
    )
    assert full.unexplored < 1e-9
    full_mean = sum(v * p for v, p in full.values.items()) / full.valid_mass

    def estimate(draws, seed):
        (head,) = exact_distributions(
            model,
            tiny_tokenizer,
            [chat],
            max_nodes=32,
            width=16,
            max_new_tokens=4,
            tail_draws=draws,
            generator=torch.Generator().manual_seed(seed),
        )
        whole = head.estimated()
        return head, whole.valid_mass, sum(v * p for v, p in whole.values.items()) / whole.valid_mass

    head, mass, mean = estimate(3000, 0)
    assert head.unexplored > 0.1  # the head alone misses a sixth of the answers
    assert full.valid_mass - head.valid_mass == pytest.approx(head.unexplored)
    assert abs(mean - full_mean) < 4 * head.mean_se()
    valid = np.array([value is not None for value, _ in head.tail])
    assert abs(mass - full.valid_mass) <= 1e-9 + 4 * head.unexplored * valid.std(ddof=1) / math.sqrt(
        len(valid)
    )
    runs = [estimate(40, seed) for seed in range(1, 41)]
    estimates = np.array([m for _, _, m in runs])
    reported = np.array([h.mean_se() ** 2 for h, _, _ in runs])
    spread = estimates.std(ddof=1)
    assert abs(estimates.mean() - full_mean) < 4 * spread / math.sqrt(len(runs))
    # the reported variance is right on average (one prompt's is noisy: its values are heavy-tailed)
    assert 0.6 < math.sqrt(reported.mean()) / spread < 1.6


@pytest.mark.parametrize(
    ("text", "state", "closed"),
    [
        ("", "pending", None),
        (" $", "pending", None),
        ("12", "number", False),  # 120, 12,000, 12k could follow
        ("12 ", "number", False),  # "12 thousand"
        ("12 per", "number", True),
        ("12,0", "number", False),
        ("12,00 ", "number", True),
        ("15k", "number", False),  # "15km" is 15
        ("15k ", "number", True),
        ("15 thou", "number", False),
        ("12.", "number", False),
        ("12.5%", "number", True),
        ("I'd", "other", None),
    ],
)
def test_when_a_leading_number_is_settled(text, state, closed):
    assert leading_state(text) == state
    if closed is not None:
        assert settled(text) == closed


def test_the_shortcut_agrees_with_trying_every_continuation():
    """settled() decides plain tails without parsing probes; on 3,000 random answer beginnings it agrees
    with the probe oracle everywhere."""
    rng = np.random.default_rng(0)
    pieces = [
        "1",
        "2",
        "0",
        "00",
        "5",
        ",",
        ".",
        " ",
        "k",
        "K",
        " k",
        "m",
        "b",
        "n",
        "th",
        "ousand",
        " thousand",
        " million",
        "illion",
        " per",
        " dollars",
        "%",
        "-",
        "/",
        "\n",
        "a",
        "s",
        "$",
        "km",
        "g",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(pieces, rng.integers(1, 6)))
        text = rng.choice(["1", "2", "35"]) + text
        assert settled(text) == _probed(text), text


def test_the_differentiable_expectation_equals_the_exact_mean_and_its_gradient_is_right(
    tiny_llama_dir, tiny_tokenizer
):
    """expected_value recomputes the exact readout's mean from one pass over the explored tree, and its
    gradient matches a central finite difference (float64 model, nuclei held fixed)."""
    model = peaked_model(tiny_llama_dir, tiny_tokenizer).double()
    chat = chat_prompt(tiny_tokenizer, "What should I offer Jamal?", "$")
    (found,) = exact_distributions(
        model, tiny_tokenizer, [chat], epsilon=1e-12, max_nodes=4000, max_new_tokens=4
    )
    mean = sum(v * p for v, p in found.values.items()) / found.valid_mass
    weight = model.model.layers[1].mlp.down_proj.weight
    with torch.enable_grad():
        value = expected_value(model, tiny_tokenizer, chat, found, TEMPERATURE)
        (gradient,) = torch.autograd.grad(value, weight)
    assert value.item() == pytest.approx(mean, rel=1e-6) and len(found.endings) >= 3
    direction = torch.randn_like(weight, generator=torch.Generator().manual_seed(0))
    step = 1e-4
    with torch.no_grad():
        weight.add_(step * direction)
        plus = expected_value(model, tiny_tokenizer, chat, found, TEMPERATURE)
        weight.sub_(2 * step * direction)
        minus = expected_value(model, tiny_tokenizer, chat, found, TEMPERATURE)
        weight.add_(step * direction)
    numeric = ((plus - minus) / (2 * step)).item()
    assert abs(numeric) > 1e-3 and (gradient * direction).sum().item() == pytest.approx(numeric, rel=3e-4)


def test_the_stored_tree_gives_the_answers_row_its_value_back(tiny_llama_dir, tiny_tokenizer):
    """The base answers keep the explored tree (keep_tree); rebuilt from the Parquet round trip, the
    differentiable mean equals the row's `value`, which is computed from the closed masses, range included:
    what attribution through `exact` differentiates without enumerating again."""
    model = peaked_model(tiny_llama_dir, tiny_tokenizer).double()
    rows = [{"prompt_id": "p0", "text": "What should I offer Jamal?"}]
    settings = {**readout_settings("exact", max_new_tokens=4), "exact": {"epsilon": 1e-12, "max_nodes": 4000}}
    answer = Answer(unit="USD", prefix="$", range=(1, 1e6), grid=(10.0,))
    columns = read_answers(model, tiny_tokenizer, rows, answer, settings, keep_tree=True)
    table = pa.Table.from_pydict(columns, schema=ANSWER_SCHEMA)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    (row,) = pq.read_table(pa.BufferReader(buffer.getvalue())).to_pylist()
    assert row["invalid_reasons"] == [OUT_OF_RANGE]  # the range cuts part of the distribution
    tree = from_tree(row["tree_nodes"], row["tree_kept"], row["tree_endings"])
    assert {value for *_, value in tree.endings} == set(row["support"])
    chat = chat_prompt(tiny_tokenizer, rows[0]["text"], "$")
    with torch.no_grad():
        value = expected_value(model, tiny_tokenizer, chat, tree, TEMPERATURE)
    assert value.item() == pytest.approx(row["value"], rel=1e-6)  # expected_value works in float32
    # without keep_tree (every evaluation's answers) nothing is stored
    assert read_answers(model, tiny_tokenizer, rows, answer, settings)["tree_nodes"] == [None]

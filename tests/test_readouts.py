"""The three readouts on the tiny random Llama, each against an independent computation."""

import copy
import math

import pytest
import torch
from conftest import readout_settings

from biasprune.decoding import (
    _top_p_filter,
    decode,
    encode_left_padded,
    encode_shared_prefix,
    generate_tokens,
    sample_top_p,
)
from biasprune.grid import Candidates, _extends_number, expected_answer, grid_log_probs
from biasprune.models import load_model
from biasprune.readouts import ANSWER_COLUMNS, read_answers
from biasprune.specs import Answer
from biasprune.tokens import chat_prompt

MESSAGES = ["I want to buy a car from Jamal.", "How many hours per week for pottery by Emily, roughly?", "Hi"]
SETTINGS = readout_settings(batch_size=2, max_new_tokens=5, n=3)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(tiny_llama_dir, device="cpu", dtype="float32")


def chats(tokenizer, prefix="$"):
    return [chat_prompt(tokenizer, message, prefix) for message in MESSAGES]


def test_batched_greedy_equals_generate_one_prompt_at_a_time(tiny):
    model, tokenizer = tiny
    ours = decode(model, tokenizer, chats(tokenizer), n=2, max_new_tokens=6)
    for chat, answers in zip(chats(tokenizer), ours, strict=True):
        ids = tokenizer(chat, return_tensors="pt", add_special_tokens=False).input_ids
        out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        reference = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        assert answers == [reference, reference]


def test_near_zero_temperature_sampling_is_greedy_through_the_shared_cache(tiny):
    model, tokenizer = tiny
    greedy = decode(model, tokenizer, chats(tokenizer), n=1, max_new_tokens=6)
    cold = decode(
        model,
        tokenizer,
        chats(tokenizer),
        n=4,
        max_new_tokens=6,
        temperature=1e-4,
        top_p=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert cold == [answers * 4 for answers in greedy]


def test_sampling_is_seeded_and_varies(tiny):
    model, tokenizer = tiny

    def run(seed):
        return decode(
            model,
            tokenizer,
            chats(tokenizer),
            n=8,
            max_new_tokens=4,
            temperature=1.0,
            top_p=1.0,
            generator=torch.Generator().manual_seed(seed),
        )

    first = run(1)
    assert first == run(1) and first != run(2)
    assert all(len(answers) == 8 for answers in first) and len(set(first[0])) > 1


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(_top_p_filter(logits, 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(_top_p_filter(logits, 0.1)).tolist() == [[True, False, False, False]]


def brute_force_log_probs(model, tokenizer, chat_texts, grid, prefix, temperature=1.0):
    """log P(value) by full forward passes, one prompt + one written form at a time, no cache or padding."""
    candidates = Candidates.build(tokenizer, grid, prefix)
    continuation = set(candidates.continuation)
    result = []
    for chat in chat_texts:
        prompt = tokenizer(chat, add_special_tokens=False)["input_ids"]
        per_value = [[] for _ in grid]
        for path, value in zip(candidates.form_nodes, candidates.value_index, strict=True):
            form = [candidates.node_token[node] for node in path]
            with torch.no_grad():
                logp = (model(torch.tensor([prompt + form])).logits[0] / temperature).log_softmax(-1)
            start = len(prompt) - 1
            total = sum(logp[start + i, token].item() for i, token in enumerate(form))
            extend = sum(logp[start + len(form), token].exp().item() for token in continuation)
            per_value[value].append(total + math.log(1 - extend))
        scores = torch.tensor([torch.logsumexp(torch.tensor(v), 0).item() for v in per_value])
        result.append(scores)
    return torch.stack(result)  # unnormalised: log P(value), summing to the grid's coverage


@pytest.mark.parametrize("encode", [encode_left_padded, encode_shared_prefix])
@pytest.mark.parametrize(
    ("grid", "prefix"), [((10, 15, 100, 1500, 2000, 10000), "$"), ((0.05, 0.5, 1, 12), "Answer: ")]
)
def test_expected_readout_equals_brute_force(tiny, grid, prefix, encode):
    """Each prompt alone, one written form at a time, equals the batched trie readout, whether the batch
    is left-padded or runs its common leading tokens once (padding then sits between prefix and rest)."""
    model, tokenizer = tiny
    stripped = prefix.rstrip()
    texts = [chat_prompt(tokenizer, message, stripped) for message in MESSAGES]
    candidates = Candidates.build(tokenizer, grid, prefix)
    # "1500" and "1,500"; "2000", "2,000", "2k" and "2 thousand"
    thousands = sum(value >= 1000 and value % 1000 == 0 for value in grid)
    assert len(candidates.form_nodes) == len(grid) + sum(value >= 1000 for value in grid) + 2 * thousands
    assert len(candidates.node_token) < sum(map(len, candidates.form_nodes))  # shared prefixes
    with torch.no_grad():
        batch = encode(tokenizer, texts, "cpu")
        ours, coverage = grid_log_probs(model, batch, candidates, len(grid), 0.6, with_coverage=True)
    if encode is encode_shared_prefix:  # the chat template's opening runs once
        assert batch["prefix_ids"].shape[1] == len(
            tokenizer(texts[0][: texts[0].index("I want")])["input_ids"]
        )
    expected = brute_force_log_probs(model, tokenizer, texts, grid, prefix, temperature=0.6)
    assert torch.allclose(ours, expected.log_softmax(-1), atol=2e-4), (ours - expected).abs().max()
    assert torch.allclose(coverage, expected.logsumexp(-1), atol=2e-4)
    assert (coverage.exp() < 1).all()
    assert tokenizer.convert_tokens_to_ids("k") in candidates.continuation  # "15" then "k" is not 15


@pytest.mark.parametrize(
    ("piece", "extends"),
    [
        ("5", True),
        (",", True),
        (".5", True),
        (".", False),
        ("k", True),
        (" thousand", True),
        (" thou", True),
        (" th", True),
        (" t", False),
        (" the", False),
        (" per", False),
        ("km", False),
    ],
)
def test_what_extends_a_number_on_the_grid(piece, extends):
    assert _extends_number(piece) == extends


def test_expected_answer_by_hand():
    log_probs = torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    answer, entropy = expected_answer(log_probs.nan_to_num(neginf=-1e30), (1.0, 100.0, 7.0))
    assert answer.tolist() == pytest.approx([10.0, 7.0])
    assert entropy.tolist() == pytest.approx([math.log(2), 0.0], abs=1e-6)


def test_expected_readout_is_differentiable(tiny):
    model, tokenizer = tiny
    model = copy.deepcopy(model).double()  # float64, so a finite difference can check the gradient
    grid = (5.0, 10.0, 20.0, 50.0)
    candidates = Candidates.build(tokenizer, grid, "$")
    batch = encode_left_padded(tokenizer, chats(tokenizer)[:2], "cpu")
    weight = model.model.layers[1].mlp.down_proj.weight
    direction = torch.randn_like(weight, generator=torch.Generator().manual_seed(0))

    def objective():
        answer, _ = expected_answer(grid_log_probs(model, batch, candidates, len(grid)), grid)
        return answer[0] - answer[1]

    gap = objective()
    (gradient,) = torch.autograd.grad(gap, weight)

    def central(step):
        with torch.no_grad():
            weight.add_(step * direction)
            plus = objective()
            weight.sub_(2 * step * direction)
            minus = objective()
            weight.add_(step * direction)
        return ((plus - minus) / (2 * step)).item()

    # The rotary tables stay float32 in a float64 model: finite differences carry ~1e-4 relative noise.
    assert (gradient * direction).sum().item() == pytest.approx(central(1e-4), rel=3e-4)


@pytest.mark.parametrize("mode", ["expected", "greedy", "sample"])
def test_read_answers_columns_per_mode(tiny, mode):
    model, tokenizer = tiny
    rows = [{"prompt_id": f"p{index}", "text": message} for index, message in enumerate(MESSAGES)]
    answer = Answer(unit="USD", prefix="$", range=(1, 1000), grid=(10.0, 20.0, 50.0))
    columns = read_answers(model, tokenizer, rows, answer, dict(SETTINGS, mode=mode))
    n = 3 if mode == "sample" else 1
    assert tuple(columns) == ANSWER_COLUMNS
    assert columns["prompt_id"] == [row["prompt_id"] for row in rows for _ in range(n)]
    assert columns["sample"] == [index for _ in rows for index in range(n)]
    for valid, value, reason in zip(columns["valid"], columns["value"], columns["reason"], strict=True):
        assert valid == (reason == "ok") and (value is not None) == valid
    if mode == "expected":
        assert all(10 <= value <= 50 for value in columns["value"])
        assert all(sum(probs) == pytest.approx(1, abs=1e-5) for probs in columns["grid_probs"])
    else:
        assert (
            all(isinstance(text, str) for text in columns["text"])
            and columns["entropy"] == [None] * len(rows) * n
        )


def test_fast_nucleus_sampling_draws_from_the_same_distribution_as_the_full_sort():
    # Exact check of the kept set and renormalised probabilities through sampling frequencies.
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 1000, generator=generator) * 3
    probabilities = _top_p_filter(logits, 0.8).softmax(-1)[0]
    draws = sample_top_p(logits.expand(20000, -1), 1.0, 0.8, torch.Generator().manual_seed(1), k=64)
    frequencies = torch.bincount(draws, minlength=1000) / 20000
    assert set(draws.tolist()) <= set(torch.nonzero(probabilities).flatten().tolist())
    assert (frequencies - probabilities).abs().max() < 0.015
    # When the top k do not hold top_p of the mass, the whole vocabulary is used.
    flat = torch.zeros(4, 1000)
    assert sample_top_p(flat, 1.0, 0.9, torch.Generator().manual_seed(2), k=8).max() >= 8


def assert_frequencies_match(draws: torch.Tensor, expected: torch.Tensor) -> None:
    """Every token of probability > 1% within 4.5 standard errors of its expected frequency, and the rest in sum."""
    n = len(draws)
    observed = torch.bincount(draws, minlength=len(expected)).double() / n
    expected = expected.double()
    common = expected > 0.01
    assert common.sum() >= 3
    error = (expected * (1 - expected) / n).sqrt()
    assert ((observed - expected).abs()[common] < 4.5 * error[common]).all()
    rest = expected[~common].sum()
    assert abs(observed[~common].sum() - rest) < 4.5 * (rest * (1 - rest) / n).sqrt()


def test_samples_follow_the_model_distribution_through_shared_prefixes(tiny):
    # Two steps of sampling: the first token's frequencies match softmax(logits / T) after the prompt, and
    # the second token's, given the commonest first token, match the model's conditional distribution.
    model, tokenizer = tiny
    chat, temperature, n = chats(tokenizer)[0], 0.05, 8000
    generator = torch.Generator().manual_seed(3)
    tokens = generate_tokens(model, tokenizer, [chat], n, 2, temperature, generator=generator)
    prompt = tokenizer(chat, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        first = (model(torch.tensor([prompt])).logits[0, -1] / temperature).softmax(-1)
    assert_frequencies_match(tokens[:, 0], first)
    top = first.argmax().item()
    with torch.no_grad():
        second = (model(torch.tensor([[*prompt, top]])).logits[0, -1] / temperature).softmax(-1)
    assert_frequencies_match(tokens[tokens[:, 0] == top, 1], second)


def test_a_value_of_zero_probability_keeps_answer_and_entropy_finite():
    answer, entropy = expected_answer(torch.log(torch.tensor([[1.0, 0.0, 0.0]])), (3.0, 5.0, 7.0))
    assert answer.tolist() == pytest.approx([3.0]) and entropy.tolist() == [0.0]


def test_a_bare_point_continues_a_number_only_when_the_grid_has_decimals(tiny):
    _, tokenizer = tiny
    point = tokenizer.convert_tokens_to_ids(".")
    assert point in Candidates.build(tokenizer, (1.0, 1.5, 2.0), "Answer: ").continuation
    assert point not in Candidates.build(tokenizer, (1.0, 2.0, 3.0), "Answer: ").continuation

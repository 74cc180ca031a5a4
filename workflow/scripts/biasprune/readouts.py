"""Reading a number from the model: sampled or greedy decoding with a shared prompt cache, and the
expected value over a candidate grid from teacher-forced logits (deterministic and differentiable)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import torch

from .parse import VALID_REASONS, in_range, parse_number
from .tokens import chat_prompt


def pad_left(sequences: Sequence[Sequence[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Token ids, attention mask and position ids of token sequences, left-padded to a common length."""
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, tokens in enumerate(sequences):
        ids[row, width - len(tokens) :] = torch.tensor(tokens)
        mask[row, width - len(tokens) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": positions.to(device),
    }


def encode_left_padded(tokenizer, texts: Sequence[str], device) -> dict[str, torch.Tensor]:
    """Chat texts as a left-padded batch (see pad_left)."""
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    return pad_left(encoded, tokenizer.pad_token_id, device)


def encode_shared_prefix(tokenizer, texts: Sequence[str], device) -> dict[str, torch.Tensor]:
    """Chat texts as their common leading tokens (`prefix_ids`, run once for the batch) and the rest,
    padded between the two: row = prefix + pads + own tokens. `attention_mask` spans prefix and rest,
    `position_ids` the rest. Every row keeps at least one own token."""
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    shared = 0
    for column in zip(*encoded, strict=False):
        if len(set(column)) > 1:
            break
        shared += 1
    shared = min(shared, min(map(len, encoded)) - 1)
    rest = pad_left([ids[shared:] for ids in encoded], tokenizer.pad_token_id, device)
    prefix_mask = torch.ones((len(texts), shared), dtype=torch.long, device=device)
    return {
        "prefix_ids": torch.tensor([encoded[0][:shared]], device=device),
        "input_ids": rest["input_ids"],
        "attention_mask": torch.cat([prefix_mask, rest["attention_mask"]], dim=1),
        "position_ids": rest["position_ids"] + shared,
    }


def _prefill(model, batch: dict[str, torch.Tensor], **kwargs):
    """Forward of a batch, through its shared prefix first when it has one (see encode_shared_prefix)."""
    batch = dict(batch)
    prefix = batch.pop("prefix_ids", None)
    if prefix is not None and prefix.shape[1]:
        cache = model(input_ids=prefix, use_cache=True).cache
        cache.batch_repeat_interleave(batch["input_ids"].shape[0])
        batch["cache"] = cache
    return model(**batch, **kwargs)


def split_prefix(prefix: str) -> tuple[str, str]:
    """Trailing whitespace of a prefix belongs to the answer's first token ("Answer:" + " 12"), not the prompt."""
    stripped = prefix.rstrip()
    return stripped, prefix[len(stripped) :]


def eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    return sorted({*ids, tokenizer.eos_token_id} - {None})


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (always at least the best one)."""
    if top_p >= 1:
        return logits
    ordered, order = logits.sort(dim=-1, descending=True)
    probabilities = ordered.softmax(-1)
    drop = probabilities.cumsum(-1) - probabilities > top_p
    ordered = ordered.masked_fill(drop, -math.inf)
    return torch.full_like(logits, -math.inf).scatter(-1, order, ordered)


def nucleus(logits: torch.Tensor, temperature: float, top_p: float, k: int = 256):
    """(token ids, weights) per row of the nucleus of softmax(logits / temperature), for sampling.

    Exactly nucleus sampling, but fast: when the k most likely tokens already hold more than top_p of the
    mass in every row (nearly always), only they are sorted; otherwise the whole vocabulary is.
    """
    logits = logits.float() / temperature
    top, index = logits.topk(min(k, logits.shape[-1]), dim=-1)
    weights = (top - logits.logsumexp(-1, keepdim=True)).exp()
    if top_p < 1 and (weights.sum(-1) > top_p).all():
        return index, weights.masked_fill(weights.cumsum(-1) - weights > top_p, 0.0)
    every = torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
    return every, _top_p_filter(logits, top_p).softmax(-1)


def sample_top_p(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None, k: int = 256
) -> torch.Tensor:
    """One token per row from the nucleus of softmax(logits / temperature)."""
    index, weights = nucleus(logits, temperature, top_p, k)
    choice = torch.multinomial(weights.cpu(), 1, generator=generator).to(index.device)
    return index.gather(-1, choice).squeeze(-1)


@torch.inference_mode()
def generate_tokens(
    model,
    tokenizer,
    chats: Sequence[str],
    n: int = 1,
    max_new_tokens: int = 10,
    temperature: float = 0.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """New token ids (rows: prompt-major, n per prompt; padded after a stop token), greedy when temperature is 0.

    Each prompt is encoded once and its key/value cache serves all its samples; the prompts of a batch
    decode together (left padding, explicit position ids). Samples that have drawn the same tokens so far
    share one cache row and one forward pass (their next-token distributions are identical), so the work
    grows with the number of distinct partial answers, not with n.
    """
    batch = encode_left_padded(tokenizer, chats, model.device)
    out = model(**batch, use_cache=True, logits_to_keep=1)
    cache, logits = out.cache, out.logits[:, -1]
    mask, position = batch["attention_mask"], batch["position_ids"][:, -1:]
    rows = len(chats) * n
    group = torch.arange(len(chats), device=model.device).repeat_interleave(n)  # the cache row of each sample
    stop = torch.tensor(eos_ids(model, tokenizer), device=model.device)
    tokens = torch.full((rows, max_new_tokens), tokenizer.pad_token_id, dtype=torch.long, device=model.device)
    active = torch.ones(rows, dtype=torch.bool, device=model.device)
    vocabulary = logits.shape[-1]
    for step in range(max_new_tokens):
        reading = group[active]
        if temperature == 0:
            chosen = logits.argmax(-1)[reading]
        else:
            index, weights = nucleus(logits, temperature, top_p)
            choice = torch.multinomial(weights[reading].cpu(), 1, generator=generator).to(index.device)
            chosen = index[reading].gather(-1, choice).squeeze(-1)
        tokens[active, step] = chosen
        still = ~torch.isin(chosen, stop)
        active[active.clone()] = still
        if step == max_new_tokens - 1 or not active.any():
            break
        # One cache row per distinct (previous row, token): identical partial answers decode once.
        distinct, inverse = torch.unique(reading[still] * vocabulary + chosen[still], return_inverse=True)
        parents, last = distinct // vocabulary, distinct % vocabulary
        cache.batch_select_indices(parents)
        mask = torch.cat([mask[parents], mask.new_ones((len(distinct), 1))], dim=1)
        position = position[parents] + 1
        group = torch.full_like(group, -1)
        group[active] = inverse
        out = model(
            input_ids=last[:, None], attention_mask=mask, position_ids=position, cache=cache, use_cache=True
        )
        logits = out.logits[:, -1]
    return tokens


def decode(model, tokenizer, chats: Sequence[str], n: int = 1, **settings) -> list[list[str]]:
    """n decoded answers per chat text (see generate_tokens for the settings)."""
    tokens = generate_tokens(model, tokenizer, chats, n, **settings)
    stops = set(eos_ids(model, tokenizer))
    texts = []
    for row in tokens.tolist():
        cut = next((index for index, token in enumerate(row) if token in stops), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    return [texts[index * n : (index + 1) * n] for index in range(len(chats))]


# --- expected value over a candidate grid ---------------------------------------------------------------


def format_value(value: float) -> str:
    return f"{value:.10f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Candidates:
    """Every written form of every grid value (plain, with thousands separators, and whole thousands as
    "15k" and "15 thousand") as a token trie.

    Forms share prefixes ("1", "10", "100", "1,000"), so the trie has far fewer nodes than the forms
    have tokens; one forward pass over the nodes, each attending to the prompt and its own ancestors,
    scores all forms at once.
    """

    node_token: list[int]
    node_parent: list[int]  # -1: the node's token follows the prompt directly
    form_nodes: list[list[int]]  # the path of each form, root first
    value_index: list[int]  # the grid value each form writes
    continuation: list[int]  # token ids that would extend a number (so the number has not ended)

    @classmethod
    def build(cls, tokenizer, grid: Sequence[float], prefix: str) -> Candidates:
        prompt_part, lead = split_prefix(prefix)
        base = tokenizer(prompt_part, add_special_tokens=False)["input_ids"] if prompt_part else []
        nodes: dict[tuple[int, int], int] = {}
        node_token, node_parent, form_nodes, value_index = [], [], [], []
        for index, value in enumerate(grid):
            texts = {format_value(value)}
            if value >= 1000 and float(value).is_integer():
                texts.add(f"{int(value):,}")
            if value >= 1000 and float(value / 1000).is_integer():  # "15k", "15 thousand": 15000
                texts |= {f"{int(value) // 1000}k", f"{int(value) // 1000} thousand"}
            for text in sorted(texts):
                full = tokenizer(prompt_part + lead + text, add_special_tokens=False)["input_ids"]
                if full[: len(base)] != base:
                    raise ValueError(f"prefix {prefix!r} merges with the answer {text!r} when tokenized")
                path, parent = [], -1
                for token in full[len(base) :]:
                    if (parent, token) not in nodes:
                        nodes[parent, token] = len(node_token)
                        node_token.append(token)
                        node_parent.append(parent)
                    parent = nodes[parent, token]
                    path.append(parent)
                form_nodes.append(path)
                value_index.append(index)
        vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        decimals = any(not float(value).is_integer() for value in grid)
        continuation = [
            token_id
            for token_id, token in enumerate(vocabulary)
            if token and _extends_number(tokenizer.convert_tokens_to_string([token]), decimals)
        ]
        return cls(node_token, node_parent, form_nodes, value_index, continuation)

    def tensors(self, device) -> dict[str, torch.Tensor]:
        n = len(self.node_token)
        ancestors = torch.eye(n, dtype=torch.bool)
        depth = torch.zeros(n, dtype=torch.long)
        for node, parent in enumerate(self.node_parent):  # parents come before children
            if parent >= 0:
                ancestors[node] |= ancestors[parent]
                depth[node] = depth[parent] + 1
        paths = torch.zeros((len(self.form_nodes), n))
        for form, path in enumerate(self.form_nodes):
            paths[form, path] = 1.0
        return {
            "token": torch.tensor(self.node_token, device=device),
            "parent": torch.tensor(self.node_parent, device=device),
            "ancestors": ancestors.to(device),
            "depth": depth.to(device),
            "paths": paths.to(device),
            "ends": torch.tensor([path[-1] for path in self.form_nodes], device=device),
            "values": torch.tensor(self.value_index, device=device),
            "continuation": torch.tensor(self.continuation, dtype=torch.long, device=device),
        }


def _extends_number(piece: str, decimals: bool = False) -> bool:
    """A token that continues a number: digits, a decimal part, a thousands separator, a bare "." when the
    grid has decimal values (else "2" would also collect the mass of "2.5"), and a thousands scale ("k",
    " thousand", the start of "thousand": "15k" is 15000, not 15)."""
    if not piece:
        return False
    if piece == ".":
        return decimals
    word = piece.lower().lstrip()
    scale = word == "k" or word.startswith("thousand") or (len(word) >= 2 and "thousand".startswith(word))
    return piece[0].isdigit() or piece == "," or (piece[0] in ".," and piece[1:2].isdigit()) or scale


def grid_log_probs(
    model,
    batch: dict[str, torch.Tensor],
    candidates: Candidates,
    n_values: int,
    temperature: float = 1.0,
    with_coverage: bool = False,
):
    """log P(value | prompt) for each prompt of the batch and each grid value, renormalised over the grid
    (with `with_coverage`, also the log of the grid's coverage: the probability of every grid form before
    renormalising, against everything else the model could write). Next-token distributions are taken at
    `temperature` (the sampler's).

    P(written form) = product of its tokens' probabilities times the probability that the number ends
    there (the next token does not extend it); a value's forms are summed. The prompt runs once; the
    candidate trie runs once on top of its cache with a tree attention mask. Differentiable (no
    inference mode here): the objective of attribution scores.
    """
    device = batch["input_ids"].device
    trie = candidates.tensors(device)
    n_prompts, n_nodes = batch["input_ids"].shape[0], len(candidates.node_token)
    out = _prefill(model, batch, use_cache=True, logits_to_keep=1)
    first = (_at_least_float32(out.logits[:, -1]) / temperature).log_softmax(-1)  # (prompts, vocab)
    visible = torch.cat(
        [
            batch["attention_mask"].bool()[:, None, None, :].expand(-1, 1, n_nodes, -1),
            trie["ancestors"][None, None].expand(n_prompts, 1, -1, -1),
        ],
        dim=-1,
    )
    mask = torch.zeros(visible.shape, dtype=model.dtype, device=device).masked_fill(
        ~visible, torch.finfo(model.dtype).min
    )
    out = model(
        input_ids=trie["token"][None].expand(n_prompts, -1),
        attention_mask=mask,
        position_ids=batch["position_ids"][:, -1:] + 1 + trie["depth"][None],
        cache=out.cache,
        use_cache=True,
    )
    logits = _at_least_float32(out.logits) / temperature  # (prompts, nodes, vocab)
    normaliser = logits.logsumexp(-1)
    parent = trie["parent"].clamp(min=0)
    after_parent = logits[:, parent, trie["token"]] - normaliser[:, parent]
    node_logp = torch.where(trie["parent"] >= 0, after_parent, first[:, trie["token"]])
    extend = logits[:, :, trie["continuation"]].logsumexp(-1) - normaliser  # the number goes on
    # log P(end) = log(1 - P(extend)); the clamp keeps it finite (and its gradient defined) when a form is
    # all but certain to continue: such a form's probability is below 1e-6 times its prefix's anyway.
    ends = log1m_exp(extend[:, trie["ends"]].clamp(max=math.log1p(-1e-6)))
    form_logp = node_logp @ trie["paths"].T.to(node_logp.dtype) + ends  # (prompts, forms)
    value_logp = torch.stack(
        [torch.logsumexp(form_logp[:, trie["values"] == value], dim=1) for value in range(n_values)], dim=1
    )
    if with_coverage:
        return value_logp.log_softmax(-1), value_logp.logsumexp(-1)
    return value_logp.log_softmax(-1)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Log-probabilities in float32 even for a bfloat16 model (float64 stays float64)."""
    return x if x.dtype == torch.float64 else x.float()


def log1m_exp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate near 0."""
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def expected_answer(log_probs: torch.Tensor, grid: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """exp(E[log value]) under the grid distribution, and the distribution's entropy (nats)."""
    log_values = torch.log(torch.tensor(grid, dtype=log_probs.dtype, device=log_probs.device))
    probabilities = log_probs.exp()
    return torch.exp((probabilities * log_values).sum(-1)), torch.special.entr(probabilities).sum(-1)


# --- the answers table -------------------------------------------------------------------------------------


ANSWER_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("sample", pa.int32()),
        ("text", pa.string()),  # the decoded continuation (null for the expected and exact readouts)
        ("value", pa.float64()),  # the number read; exact: the mean of the valid distribution (null: invalid)
        ("valid", pa.bool_()),
        (
            "reason",
            pa.string(),
        ),  # ok, hedged, empty, no_number, refusal, too_long, out_of_range, off_grid, ...
        ("entropy", pa.float64()),  # of the grid distribution (expected readout)
        ("grid_probs", pa.list_(pa.float32())),  # probability of each grid value (expected readout)
        ("coverage", pa.float64()),  # expected: the probability of every grid form, before renormalising
        # exact: the distribution of the answer's leading number (support and absolute probabilities), the
        # mass of answers that are not a number in range (per reason) and the mass left unexplored
        ("support", pa.list_(pa.float64())),
        ("probs", pa.list_(pa.float64())),
        ("invalid_reasons", pa.list_(pa.string())),
        ("invalid_probs", pa.list_(pa.float64())),
        ("mass_invalid", pa.float64()),
        ("mass_unexplored", pa.float64()),
    ]
)
ANSWER_COLUMNS = tuple(ANSWER_SCHEMA.names)


def read_answers(model, tokenizer, prompts: Sequence[dict], answer, settings: dict, progress=None) -> dict:
    """Answers of `model` to the prompt rows of one domain, as columns of the answers table.

    `answer` is the domain's Answer spec; `settings` the readout config (mode, batch_size, max_new_tokens,
    use_prefix, max_answer_chars, sample: {n, temperature, top_p, seed}, exact: {epsilon, max_nodes, width,
    min_valid_mass}, expected: {min_coverage}).
    """
    mode, size = settings["mode"], settings["batch_size"]
    prefix = answer.prefix if (mode == "expected" or settings["use_prefix"]) else ""
    prompt_part, _ = split_prefix(prefix)
    columns = {name: [] for name in ANSWER_COLUMNS}
    batches = range(0, len(prompts), size)
    if progress:
        batches = progress(batches, desc=f"{mode} readout", unit="batch")
    sample = settings.get("sample", {})
    if mode == "expected":
        candidates = Candidates.build(tokenizer, answer.grid, prefix)
    generator = torch.Generator().manual_seed(sample.get("seed", 0))
    for start in batches:
        rows = prompts[start : start + size]
        chats = [chat_prompt(tokenizer, row["text"], prompt_part) for row in rows]
        if mode == "expected":
            _expected_rows(columns, model, tokenizer, rows, chats, candidates, answer, settings)
            continue
        if mode == "exact":
            _exact_rows(columns, model, tokenizer, rows, chats, answer, settings)
            continue
        n = sample["n"] if mode == "sample" else 1
        temperature = sample["temperature"] if mode == "sample" else 0.0
        texts = decode(
            model,
            tokenizer,
            chats,
            n,
            max_new_tokens=settings["max_new_tokens"],
            temperature=temperature,
            top_p=sample.get("top_p", 1.0),
            generator=generator,
        )
        for row, answers in zip(rows, texts, strict=True):
            for index, text in enumerate(answers):
                parsed = in_range(
                    parse_number(prompt_part + text, settings["max_answer_chars"]), answer.range
                )
                _append(
                    columns,
                    prompt_id=row["prompt_id"],
                    sample=index,
                    text=text,
                    value=parsed.value,
                    reason=parsed.reason,
                )
    return columns


def _expected_rows(columns, model, tokenizer, rows, chats, candidates, answer, settings) -> None:
    """The expected readout of a batch: exp(E[log value]) over the grid at the sampler's temperature, the
    grid's coverage, and `off_grid` where the coverage is below `expected.min_coverage`."""
    temperature = settings.get("sample", {}).get("temperature", 1.0)
    floor = settings.get("expected", {}).get("min_coverage", 0.0)
    with torch.inference_mode():
        batch = encode_shared_prefix(tokenizer, chats, model.device)
        log_probs, coverage = grid_log_probs(
            model, batch, candidates, len(answer.grid), temperature, with_coverage=True
        )
        values, entropy = expected_answer(log_probs, answer.grid)
    for row, value, spread, probs, covered in zip(
        rows, values.tolist(), entropy.tolist(), log_probs.exp(), coverage.exp().tolist(), strict=True
    ):
        # a degenerate grid distribution is reported, not stored as a number
        reason = "ok" if math.isfinite(value) else "undefined"
        if reason == "ok" and covered < floor:
            reason = "off_grid"
        _append(
            columns,
            prompt_id=row["prompt_id"],
            value=value if reason == "ok" else None,
            reason=reason,
            entropy=spread,
            grid_probs=probs.tolist(),
            coverage=covered,
        )


def _exact_rows(columns, model, tokenizer, rows, chats, answer, settings) -> None:
    """The exact readout of a batch: one row per prompt with its whole answer distribution."""
    from .exact import exact_distributions

    sample, exact = settings.get("sample", {}), settings.get("exact", {})
    distributions = exact_distributions(
        model,
        tokenizer,
        chats,
        temperature=sample.get("temperature", 0.6),
        top_p=sample.get("top_p", 0.9),
        epsilon=exact.get("epsilon", 0.01),
        max_nodes=exact.get("max_nodes", 512),
        width=exact.get("width", 32),
        max_new_tokens=settings["max_new_tokens"],
        answer_range=answer.range,
        max_chars=settings["max_answer_chars"],
    )
    floor = exact.get("min_valid_mass", 0.0)
    for row, found in zip(rows, distributions, strict=True):
        support = sorted(found.values)
        mass = found.valid_mass
        if mass > 0 and mass >= floor:
            value, reason = sum(v * found.values[v] for v in support) / mass, "ok"
        else:
            value = None
            reason = max(found.invalid, key=found.invalid.get) if mass == 0 and found.invalid else "low_mass"
        reasons = sorted(found.invalid)
        _append(
            columns,
            prompt_id=row["prompt_id"],
            value=value,
            reason=reason,
            support=support,
            probs=[found.values[v] for v in support],
            invalid_reasons=reasons,
            invalid_probs=[found.invalid[r] for r in reasons],
            mass_invalid=found.invalid_mass,
            mass_unexplored=found.unexplored,
        )


def _append(columns, **fields) -> None:
    """One answers row; `valid` follows from the reason, unset fields are null."""
    fields = {"sample": 0, "text": None, **fields, "valid": fields["reason"] in VALID_REASONS}
    for name in ANSWER_COLUMNS:
        columns[name].append(fields.get(name))

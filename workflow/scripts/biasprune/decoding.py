"""Decoding a model's answer: prompts as left-padded or shared-prefix batches, the prefill through a shared
prefix, the nucleus of a next-token distribution, and greedy or sampled decoding with a shared prompt
cache."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


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


def prefill(model, batch: dict[str, torch.Tensor], **kwargs):
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

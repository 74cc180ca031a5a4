"""The expected readout's candidate grid: every written form of every grid value as a token trie, the
probability of each grid value from teacher-forced logits (deterministic and differentiable), and the
expected value over the grid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .decoding import prefill, split_prefix


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
    out = prefill(model, batch, use_cache=True, logits_to_keep=1)
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

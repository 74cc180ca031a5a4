"""The exact readout: the distribution of the number a sampled answer starts with, enumerated instead of
sampled.

The sampler (decoding.generate_tokens) draws each token from the nucleus of softmax(logits / temperature)
and stops at an end-of-sequence token or after `max_new_tokens`. Here the same decoding tree is walked
best first: the open nodes holding the most probability are run together, one token each, on top of the
prompt's key/value cache (tree attention: a node sees the prompt and its own ancestors), and each node's
nucleus, computed by the sampler's own function, splits its probability among its children. A child ends
the number (its value is settled whatever follows), extends it (stays open), or shows that the answer does
not start with a number (invalid, with the parser's reason when the answer is complete there). Enumeration
stops when the open mass is below `epsilon` or the node budget is spent; what is left is reported as
unexplored, never dropped or renormalised. How a text is read (its leading number, and whether that number is
settled) is `leading`'s; this module holds the enumeration, its sampled tail and the differentiable mean.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import torch

from .decoding import encode_shared_prefix, eos_ids, nucleus, prefill
from .leading import NOT_LEADING, leading_number, leading_state, settled
from .parse import OUT_OF_RANGE


@dataclass
class Distribution:
    """One prompt's answer distribution: value -> probability, invalid reason -> probability, open mass."""

    values: dict[float, float] = field(default_factory=dict)
    invalid: dict[str, float] = field(default_factory=dict)
    unexplored: float = 0.0
    nodes: int = 0  # forward positions spent
    # The explored tree, for the differentiable expectation: each run node's nucleus (path -> kept tokens)
    # and every valid ending (path of the node, the token that ends it there, value).
    nuclei: dict[tuple[int, ...], list[int]] = field(default_factory=dict, repr=False)
    endings: list[tuple[tuple[int, ...], int, float]] = field(default_factory=list, repr=False)
    # Answers drawn from the sampler conditioned on leaving the explored tree: (value or None, reason).
    tail: list[tuple[float | None, str]] = field(default_factory=list, repr=False)

    def add(self, value: float | None, reason: str, probability: float) -> None:
        if value is None:
            self.invalid[reason] = self.invalid.get(reason, 0.0) + probability
        else:
            self.values[value] = self.values.get(value, 0.0) + probability

    @property
    def valid_mass(self) -> float:
        return sum(self.values.values())

    @property
    def invalid_mass(self) -> float:
        return sum(self.invalid.values())

    def estimated(self) -> Distribution:
        """The head plus its sampled tail (sum and sample): each tail draw carries unexplored / draws, so every
        probability and moment is an unbiased estimate of the whole distribution's, and nothing is left
        unexplored. Without tail draws, the head as enumerated."""
        if not self.tail:
            return self
        whole = Distribution(dict(self.values), dict(self.invalid), 0.0, self.nodes)
        for value, reason in self.tail:
            whole.add(value, reason, self.unexplored / len(self.tail))
        return whole

    def mean_se(self) -> float:
        """The Monte Carlo standard error of the estimated valid mean (delta method for the ratio of the
        valid value's and the valid mass's sums, each a head constant plus the tail's mean times the
        unexplored mass): 0 with nothing unexplored, NaN with fewer than two tail draws."""
        if self.unexplored == 0:
            return 0.0
        if len(self.tail) < 2:
            return math.nan
        whole = self.estimated()
        mass = whole.valid_mass
        if mass <= 0:
            return math.nan
        mean = sum(v * p for v, p in whole.values.items()) / mass
        residuals = [(value - mean) if value is not None else 0.0 for value, _ in self.tail]
        return self.unexplored * math.sqrt(statistics.variance(residuals) / len(residuals)) / mass


TREE_ENDING = pa.struct([("node", pa.int32()), ("token", pa.int32()), ("value", pa.float64())])


def tree_columns(found: Distribution) -> dict:
    """The explored tree as answers-table fields: node paths, their nuclei, endings by node index."""
    paths = list(found.nuclei)
    index = {path: i for i, path in enumerate(paths)}
    return {
        "tree_nodes": [list(path) for path in paths],
        "tree_kept": [found.nuclei[path] for path in paths],
        "tree_endings": [{"node": index[path], "token": t, "value": v} for path, t, v in found.endings],
    }


def from_tree(nodes, kept, endings) -> Distribution:
    """The explored tree stored by tree_columns, as the Distribution expected_value reads."""
    paths = [tuple(path) for path in nodes]
    return Distribution(
        nuclei={path: list(tokens) for path, tokens in zip(paths, kept, strict=True)},
        endings=[(paths[e["node"]], e["token"], e["value"]) for e in endings],
    )


@dataclass(order=True)
class _Node:
    priority: float  # -probability: heapq pops the likeliest first
    tokens: tuple[int, ...] = field(compare=False)
    slots: tuple[int, ...] = field(compare=False)  # cache positions of the ancestors' tokens


_OPEN = object()  # a child that neither ends the number nor shows it invalid


class _Tree:
    """The open nodes of one prompt and what its closed mass became."""

    def __init__(self, tokenizer, stops, lead: str, answer_range, max_new_tokens: int, max_chars: int):
        self.tokenizer, self.stops, self.lead = tokenizer, stops, lead
        self.range, self.max_new_tokens, self.max_chars = answer_range, max_new_tokens, max_chars
        self.open: list[_Node] = []
        self.result = Distribution()

    def text(self, tokens: Sequence[int]) -> str:
        return self.lead + self.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def read(self, text: str) -> tuple[float | None, str]:
        value, reason = leading_number(text, self.max_chars)
        if value is not None and not self.range[0] <= value <= self.range[1]:
            return None, OUT_OF_RANGE
        return value, reason

    def child(self, node_tokens: tuple[int, ...], token: int):
        """What the child `token` of a node is: _OPEN, or its (value or None, reason) when it is closed."""
        if token in self.stops:
            return self.read(self.text(node_tokens))
        tokens = (*node_tokens, token)
        text = self.text(tokens)
        state = leading_state(text)
        if state == "other":
            return None, NOT_LEADING
        if len(tokens) >= self.max_new_tokens or (state == "number" and settled(text)):
            return self.read(text)
        return _OPEN

    def branch(self, node_tokens, slots, probability: float, children, weights) -> None:
        """Split `probability` over the children of a node whose nucleus is (children, weights)."""
        self.result.nuclei[node_tokens] = list(children)
        for token, weight in zip(children, weights, strict=True):
            outcome = self.child(node_tokens, token)
            if outcome is _OPEN:
                heapq.heappush(self.open, _Node(-probability * weight, (*node_tokens, token), slots))
                continue
            self.result.add(*outcome, probability * weight)
            if outcome[0] is not None:
                self.result.endings.append((node_tokens, token, outcome[0]))

    @property
    def open_mass(self) -> float:
        return -sum(node.priority for node in self.open)


def _nucleus(logits: torch.Tensor, temperature: float, top_p: float):
    """The sampler's nucleus, its weights normalised (torch.multinomial normalises them when it draws)."""
    index, weights = nucleus(logits, temperature, top_p)
    weights = weights.double()
    return index, weights / weights.sum(-1, keepdim=True)


class _Forest:
    """The prompts' key/value cache with the decoding trees grown on it: runs chosen nodes, one token each,
    on top of the prompt and their ancestors (tree attention), and gives each node's nucleus."""

    def __init__(self, model, tokenizer, chats, temperature: float, top_p: float, width: int):
        self.model, self.pad, self.width = model, tokenizer.pad_token_id, width
        self.temperature, self.top_p = temperature, top_p
        batch = encode_shared_prefix(tokenizer, chats, model.device)
        out = prefill(model, batch, use_cache=True, logits_to_keep=1)
        self.cache, self.prompt_mask = out.cache, batch["attention_mask"].bool()
        self.last = batch["position_ids"][:, -1]
        self.visible = torch.zeros((len(chats), 0, 0), dtype=torch.bool, device=model.device)
        index, weights = _nucleus(out.logits[:, -1], temperature, top_p)
        self.roots = [self._kept(index[row], weights[row]) for row in range(len(chats))]

    @staticmethod
    def _kept(index, weights) -> tuple[list[int], list[float]]:
        keep = weights > 0
        return index[keep].tolist(), weights[keep].tolist()

    def run(self, chosen: list[list[_Node]]) -> list[list[tuple[int, list[int], list[float]]]]:
        """Per prompt, for each chosen node (at most `width`): its cache slot and its nucleus."""
        rows, width, device = len(chosen), self.width, self.model.device
        used = self.visible.shape[-1]
        tokens = torch.full((rows, width), self.pad, dtype=torch.long)
        depth = torch.zeros((rows, width), dtype=torch.long)
        grown = torch.zeros((rows, used + width, used + width), dtype=torch.bool)
        grown[:, :used, :used] = self.visible.cpu()
        for row, nodes in enumerate(chosen):
            for column, node in enumerate(nodes):
                tokens[row, column] = node.tokens[-1]
                depth[row, column] = len(node.tokens) - 1
                grown[row, used + column, list(node.slots)] = True
            for column in range(width):
                grown[row, used + column, used + column] = True
        self.visible = grown.to(device)
        seen = torch.cat(
            [self.prompt_mask[:, None, :].expand(-1, width, -1), self.visible[:, used:, :]], dim=-1
        )  # (prompts, width, prompt + tree)
        dtype = self.model.dtype
        mask = torch.zeros((rows, 1, width, seen.shape[-1]), dtype=dtype, device=device)
        mask = mask.masked_fill(~seen[:, None], torch.finfo(dtype).min)
        out = self.model(
            input_ids=tokens.to(device),
            attention_mask=mask,
            position_ids=self.last[:, None] + 1 + depth.to(device),
            cache=self.cache,
            use_cache=True,
        )
        self.cache = out.cache
        index, weights = _nucleus(out.logits.flatten(0, 1), self.temperature, self.top_p)
        index, weights = index.view(rows, width, -1), weights.view(rows, width, -1)
        return [
            [
                (used + column, *self._kept(index[row, column], weights[row, column]))
                for column in range(len(nodes))
            ]
            for row, nodes in enumerate(chosen)
        ]


def exact_distributions(
    model,
    tokenizer,
    chats: Sequence[str],
    lead: str = "",
    temperature: float = 0.6,
    top_p: float = 0.9,
    epsilon: float = 0.01,
    max_nodes: int = 512,
    width: int = 32,
    max_new_tokens: int = 10,
    answer_range=(-math.inf, math.inf),
    max_chars: int = 200,
    tail_draws: int = 0,
    generator: torch.Generator | None = None,
) -> list[Distribution]:
    """The exact answer distribution of each chat text (which ends where the answer begins; `lead` is the
    whitespace of the answer prefix that the answer's first token carries).

    Each step runs, for every prompt still open, its `width` likeliest open nodes as one token each on top
    of the prompt and tree cache; a prompt closes when its open mass is below `epsilon` or it has spent
    `max_nodes` positions. Then, with `tail_draws`, that many answers per prompt are sampled from what was
    left open (a node drawn by its mass, then the sampler's tokens from there, drawn with `generator`), for
    Distribution.estimated: the sum-and-sample estimator (Liu et al. 2019) of the whole distribution.
    """
    stops = set(eos_ids(model, tokenizer))
    trees = [_Tree(tokenizer, stops, lead, answer_range, max_new_tokens, max_chars) for _ in chats]
    with torch.inference_mode():
        forest = _Forest(model, tokenizer, chats, temperature, top_p, width)
        for tree, root in zip(trees, forest.roots, strict=True):
            tree.branch((), (), 1.0, *root)
        while True:  # every pass spends at least one position of each open prompt's budget
            active = [t.open and t.open_mass >= epsilon and t.result.nodes < max_nodes for t in trees]
            if not any(active):
                break
            chosen = [
                [heapq.heappop(t.open) for _ in range(min(width, len(t.open), max_nodes - t.result.nodes))]
                if on
                else []
                for t, on in zip(trees, active, strict=True)
            ]
            for tree, nodes, nuclei in zip(trees, chosen, forest.run(chosen), strict=True):
                for node, (slot, children, weights) in zip(nodes, nuclei, strict=True):
                    tree.result.nodes += 1
                    tree.branch(node.tokens, (*node.slots, slot), -node.priority, children, weights)
        for tree in trees:
            tree.result.unexplored = tree.open_mass
        if tail_draws:
            _sample_tail(forest, trees, tail_draws, generator or torch.Generator().manual_seed(0))
    return [tree.result for tree in trees]


def _sample_tail(forest: _Forest, trees: list[_Tree], draws: int, generator: torch.Generator) -> None:
    """`draws` answers per prompt from the sampler conditioned on leaving the explored tree: an open node
    drawn with probability proportional to its mass, then tokens drawn from each nucleus, as the sampler
    does, until the answer's leading number is settled or shown invalid. Draws standing on the same node
    share its forward position."""
    walkers = []  # per prompt: the node each unfinished draw stands on (not yet run)
    for tree in trees:
        if not tree.open:
            walkers.append([])
            continue
        masses = torch.tensor([-node.priority for node in tree.open], dtype=torch.float64)
        picks = torch.multinomial(masses, draws, replacement=True, generator=generator).tolist()
        walkers.append([_Node(0.0, tree.open[i].tokens, tree.open[i].slots) for i in picks])
    while any(walkers):
        chosen = [list({w.tokens: w for w in standing}.values())[: forest.width] for standing in walkers]
        for row, (nodes, nuclei) in enumerate(zip(chosen, forest.run(chosen), strict=True)):
            tree = trees[row]
            ran = {node.tokens: (node, *result) for node, result in zip(nodes, nuclei, strict=True)}
            staying = []
            for walker in walkers[row]:
                if walker.tokens not in ran:
                    staying.append(walker)
                    continue
                node, slot, children, weights = ran[walker.tokens]
                pick = torch.multinomial(torch.tensor(weights), 1, generator=generator).item()
                outcome = tree.child(node.tokens, children[pick])
                if outcome is _OPEN:
                    staying.append(_Node(0.0, (*node.tokens, children[pick]), (*node.slots, slot)))
                else:
                    tree.result.tail.append(outcome)
            walkers[row] = staying


def expected_value(
    model, tokenizer, chat: str, found: Distribution, temperature: float = 0.6
) -> torch.Tensor:
    """The mean of `found`'s valid distribution, recomputed differentiably from the model's logits.

    The explored tree (every node whose nucleus was read) runs as one token trie on top of the prompt with a
    tree attention mask; each node's nucleus is held fixed as it was at enumeration (the top-p cut is not
    differentiable), its probabilities are the softmax at `temperature` over the kept tokens, and the mean is
    sum(P(ending) value) / sum(P(ending)) over the valid endings. Equals the exact readout's `value`."""
    device = model.device
    paths = [path for path in found.nuclei if path]  # every run node but the root (the prompt's last token)
    index = {path: i for i, path in enumerate(paths)}
    prompt = torch.tensor([tokenizer(chat, add_special_tokens=False)["input_ids"]], device=device)
    out = model(input_ids=prompt, use_cache=True)
    n = len(paths)
    logits = [out.logits[0, -1:]]
    if n:
        ancestors = torch.zeros((n, n), dtype=torch.bool)
        for path, i in index.items():
            for cut in range(1, len(path) + 1):
                ancestors[i, index[path[:cut]]] = True
        visible = torch.cat([torch.ones((n, prompt.shape[1]), dtype=torch.bool), ancestors], dim=1)
        mask = torch.zeros((1, 1, n, visible.shape[1]), dtype=model.dtype, device=device)
        mask = mask.masked_fill(~visible.to(device)[None, None], torch.finfo(model.dtype).min)
        depth = torch.tensor([len(path) - 1 for path in paths], device=device)
        trie = model(
            input_ids=torch.tensor([[path[-1] for path in paths]], device=device),
            attention_mask=mask,
            position_ids=prompt.shape[1] + depth[None],
            cache=out.cache,
            use_cache=True,
        )
        logits.append(trie.logits[0])
    logits = torch.cat(logits).float() / temperature  # row 0: the root, row 1 + i: paths[i]
    row = {(): 0} | {path: 1 + i for path, i in index.items()}
    log_p = {}  # log probability of each run node's path

    def step(path: tuple, token: int) -> torch.Tensor:
        kept = torch.tensor(found.nuclei[path], device=device)
        node = logits[row[path]]
        return node[token] - node[kept].logsumexp(-1)

    for path in sorted(row, key=len):
        log_p[path] = (
            torch.zeros((), device=device) if not path else log_p[path[:-1]] + step(path[:-1], path[-1])
        )
    masses = torch.stack([(log_p[path] + step(path, token)).exp() for path, token, _ in found.endings])
    values = torch.tensor([value for *_, value in found.endings], device=device, dtype=masses.dtype)
    return (masses * values).sum() / masses.sum()

"""The activation cache: per prompt, what every scoring method needs, reduced over tokens.

Long format, one row per (prompt_id, layer, site, reduction) with a float32 vector:

| site | reduction | vector | used by |
|---|---|---|---|
| ln1.hook_normalized, attn.hook_z, ln2.hook_normalized, mlp.hook_post | `sumsq` | sum over the configured positions of x_j^2 (input of q/k/v, o, gate/up, down) | weights/wanda |
| mlp.hook_post | `mean_name`, `mean_answer` | MLP unit activations averaged over name / answer positions | neurons/activation |
| attn.hook_z | `mean_name`, `mean_answer` | per-head outputs (heads x head_dim, flattened) averaged likewise | heads (mean ablation, analysis) |
| attn.hook_pattern | `name_mass` | per head: attention from answer positions onto all name tokens, averaged over answer positions | heads/name_attention |
| mlp.hook_post | `attribution` | per unit: -sum_t x_t * d(answer)/dx_t, first-order effect of zeroing the unit on the expected answer | neurons/attribution |
| attn.hook_z | `attribution` | per head: the same over the head's slice of the o_proj input | heads/attribution |

The residual cache (rule `residuals`, a file of its own: `activations/residuals/{domain}.parquet`, read only
by unit `directions`) has the same schema: site `resid`, layers 0..n_layers (the input of each block, and the
final residual), reductions `last_name` (the last token of the name) and `answer` (the last prompt position,
the one that predicts the answer), each one d_model vector per prompt, n = 1.

`n` is the number of positions reduced. Answer positions are the last prompt position (the one that
predicts the answer) and the model's own baseline answer; `all` positions are the whole chat-formatted
prompt plus that answer (the authors' choice), `name_and_answer` only the name and answer positions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .decoding import encode_left_padded, pad_left, split_prefix
from .grid import Candidates, expected_answer, format_value, grid_log_probs
from .hooks import hooks, split_site
from .io import atomic_path, provenance_metadata
from .models import ModelAdapter
from .tokens import chat_prompt, encode_with_name_positions
from .vocabulary import RESIDUAL_SITE, WANDA_SITES

CACHE_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("layer", pa.int16()),
        ("site", pa.string()),
        ("reduction", pa.string()),
        ("n", pa.int32()),
        ("values", pa.list_(pa.float32())),
    ]
)


@dataclass(frozen=True)
class CachedPrompt:
    """One prompt as the model sees it for caching: token ids and the positions that matter."""

    prompt_id: str
    ids: list[int]
    name: list[int]
    answer: list[int]


def baseline_answer(answer_rows: list[dict], grid: Sequence[float], prefix: str) -> str:
    """The model's own answer to append: the likeliest grid value (expected readout), the likeliest value
    (exact readout) or the first sample."""
    first = min(answer_rows, key=lambda row: row["sample"])
    _, lead = split_prefix(prefix)
    if first["grid_probs"] is not None:
        return lead + format_value(grid[int(np.argmax(first["grid_probs"]))])
    if first.get("probs"):
        return lead + format_value(first["support"][int(np.argmax(first["probs"]))])
    return first["text"] or ""


def build_sequence(tokenizer, row: dict, answer: str, prefix: str) -> CachedPrompt:
    prompt_part, _ = split_prefix(prefix)
    spans = [(span["start"], span["end"]) for span in row["name_spans"]]
    ids, occurrences = encode_with_name_positions(tokenizer, row["text"], spans, prompt_part)
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] if answer else []
    name = sorted({position for occurrence in occurrences for position in occurrence})
    answer_positions = [len(ids) - 1, *range(len(ids), len(ids) + len(answer_ids))]
    return CachedPrompt(row["prompt_id"], ids + answer_ids, name, answer_positions)


def _weights(
    sequences: Sequence[CachedPrompt], width: int, positions: str, device
) -> dict[str, torch.Tensor]:
    """Per-position weights (batch x width, left padding): selection for sums, means over name/answer."""
    shape = (len(sequences), width)
    select, name, answer = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
    for row, sequence in enumerate(sequences):
        pad = width - len(sequence.ids)
        name_at = [pad + p for p in sequence.name]
        answer_at = [pad + p for p in sequence.answer]
        name[row, name_at] = 1.0
        answer[row, answer_at] = 1.0
        if positions == "all":
            select[row, pad:] = 1.0
        else:
            select[row, name_at + answer_at] = 1.0
    return {
        "select": select.to(device),
        "name_indicator": name.to(device),
        "name_mean": (name / name.sum(1, keepdim=True)).to(device),
        "answer_mean": (answer / answer.sum(1, keepdim=True)).to(device),
    }


class _Collector:
    """Rows of the cache for one batch: (prompt index, layer, site, reduction, n, vector)."""

    def __init__(self):
        self.rows: list[tuple[int, int, str, str, int, np.ndarray]] = []

    def add(self, layer: int, site: str, reduction: str, counts: torch.Tensor, vectors: torch.Tensor) -> None:
        vectors = vectors.detach().float().cpu().numpy()
        for index, (count, vector) in enumerate(zip(counts.tolist(), vectors, strict=True)):
            self.rows.append((index, layer, site, reduction, int(count), vector))

    def table(self, prompt_ids: Sequence[str]) -> pa.Table:
        self.rows.sort(key=lambda row: (row[0], row[1], row[2], row[3]))
        vectors = [row[5].astype(np.float32) for row in self.rows]
        offsets = np.concatenate([[0], np.cumsum([len(v) for v in vectors])]).astype(np.int32)
        values = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(vectors)))
        return pa.table(
            {
                "prompt_id": pa.array([prompt_ids[row[0]] for row in self.rows]),
                "layer": pa.array([row[1] for row in self.rows], pa.int16()),
                "site": pa.array([row[2] for row in self.rows]),
                "reduction": pa.array([row[3] for row in self.rows]),
                "n": pa.array([row[4] for row in self.rows], pa.int32()),
                "values": values.cast(pa.list_(pa.float32())),
            },
            schema=CACHE_SCHEMA,
        )


def _cache_hooks(adapter: ModelAdapter, weights: dict[str, torch.Tensor], out: _Collector) -> dict:
    select, counts = weights["select"], weights["select"].sum(1)
    name_counts, answer_counts = weights["name_indicator"].sum(1), (weights["answer_mean"] > 0).sum(1)

    def sumsq(site, x):
        out.add(*split_site(site), "sumsq", counts, torch.einsum("bt,btd->bd", select, x.float() ** 2))

    def means(site, x):
        out.add(
            *split_site(site),
            "mean_name",
            name_counts,
            torch.einsum("bt,btd->bd", weights["name_mean"], x.float()),
        )
        out.add(
            *split_site(site),
            "mean_answer",
            answer_counts,
            torch.einsum("bt,btd->bd", weights["answer_mean"], x.float()),
        )

    def name_mass(site, pattern):
        mass = torch.einsum(
            "bq,bhqk,bk->bh", weights["answer_mean"], pattern.float(), weights["name_indicator"]
        )
        out.add(*split_site(site), "name_mass", answer_counts, mass)

    functions = defaultdict(list)
    for layer in range(adapter.n_layers):
        for site in WANDA_SITES:
            functions[f"blocks.{layer}.{site}"].append(sumsq)
        for site in ("mlp.hook_post", "attn.hook_z"):
            functions[f"blocks.{layer}.{site}"].append(means)
        functions[f"blocks.{layer}.attn.hook_pattern"].append(name_mass)
    return functions


@torch.inference_mode()
def cache_batch(model, tokenizer, sequences: Sequence[CachedPrompt], positions: str) -> pa.Table:
    """Reduced activations of one batch of sequences (model loaded with eager attention)."""
    adapter = ModelAdapter.of(model)
    batch = pad_left([sequence.ids for sequence in sequences], tokenizer.pad_token_id, model.device)
    weights = _weights(sequences, batch["input_ids"].shape[1], positions, model.device)
    collector = _Collector()
    with hooks(adapter, _cache_hooks(adapter, weights, collector)):
        model(**batch, use_cache=False)
    return collector.table([sequence.prompt_id for sequence in sequences])


@torch.inference_mode()
def residual_batch(model, tokenizer, sequences: Sequence[CachedPrompt]) -> pa.Table:
    """The residual stream of one batch at the last name token and the answer position, every layer."""
    adapter = ModelAdapter.of(model)
    batch = pad_left([sequence.ids for sequence in sequences], tokenizer.pad_token_id, model.device)
    width, rows = batch["input_ids"].shape[1], torch.arange(len(sequences))
    at = {
        "last_name": torch.tensor([width - len(s.ids) + s.name[-1] for s in sequences]),
        "answer": torch.tensor([width - len(s.ids) + s.answer[0] for s in sequences]),
    }
    layers = {adapter.residual_site(layer): layer for layer in range(adapter.n_layers + 1)}
    ones, collector = torch.ones(len(sequences)), _Collector()

    def grab(site, x):
        for reduction, positions in at.items():
            collector.add(layers[site], RESIDUAL_SITE, reduction, ones, x[rows, positions.to(x.device)])

    with hooks(adapter, dict.fromkeys(layers, grab)):
        model(**batch, use_cache=False)
    return collector.table([sequence.prompt_id for sequence in sequences])


def cache_residuals(
    model, tokenizer, prompts: Sequence[dict], prefix: str, batch_size: int = 8, progress=None
):
    """Yield the residual cache of one domain batch by batch (`prefix`: the assistant prefix the readout
    pre-fills; the answer position is its last token)."""
    starts = range(0, len(prompts), batch_size)
    for start in progress(starts, desc="residuals", unit="batch") if progress else starts:
        rows = prompts[start : start + batch_size]
        yield residual_batch(model, tokenizer, [build_sequence(tokenizer, row, "", prefix) for row in rows])


def attribution_batch(
    model,
    tokenizer,
    rows: Sequence[dict],
    candidates: Candidates,
    grid,
    prefix: str,
    readout: dict | None = None,
    trees: Sequence[dict] = (),
) -> pa.Table:
    """First-order effect of zeroing each MLP unit and each head on each prompt's answer.

    One forward and backward through the expected readout (prompt and candidate trie) at `readout`'s sampler
    temperature (1 without one), or, when `readout` is the exact readout's settings, through the mean of the
    exact distribution's explored head (`trees`: each prompt's base answers row with the tree the readout
    stored; each node's nucleus fixed as enumerated, the valid endings in the domain's range; one prompt at
    a time); the effect sums over every position where the unit acts, -sum_t x_t * grad_t.
    """
    adapter = ModelAdapter.of(model)
    prompt_part, _ = split_prefix(prefix)
    chats = [chat_prompt(tokenizer, row["text"], prompt_part) for row in rows]
    if readout is not None and readout["mode"] == "exact":
        from .exact import expected_value, from_tree

        temperature = readout["sample"]["temperature"]
        found = [from_tree(row["tree_nodes"], row["tree_kept"], row["tree_endings"]) for row in trees]
        objectives = [
            lambda chat=chat, tree=tree: expected_value(model, tokenizer, chat, tree, temperature)
            for chat, tree in zip(chats, found, strict=True)
        ]
        tables = [
            _attribution(adapter, objective, torch.ones(1), [row["prompt_id"]])
            for objective, row in zip(objectives, rows, strict=True)
        ]
        return pa.concat_tables(tables)
    batch = encode_left_padded(tokenizer, chats, model.device)
    temperature = readout["sample"]["temperature"] if readout is not None else 1.0

    def objective():
        return expected_answer(grid_log_probs(model, batch, candidates, len(grid), temperature), grid)[0]

    return _attribution(
        adapter, objective, batch["attention_mask"].sum(1), [row["prompt_id"] for row in rows]
    )


def _attribution(adapter, objective, counts, prompt_ids) -> pa.Table:
    """-sum_t x_t * d(objective)/dx_t per MLP unit and head, through hooks on every layer's sites."""
    stored: dict[tuple[int, str], list[torch.Tensor]] = defaultdict(list)

    def store(site, x):
        stored[split_site(site)].append(x)

    functions = {
        f"blocks.{layer}.{site}": store
        for layer in range(adapter.n_layers)
        for site in ("mlp.hook_post", "attn.hook_z")
    }
    with hooks(adapter, functions), torch.enable_grad():
        answer = objective()
        keys = list(stored)
        tensors = [tensor for key in keys for tensor in stored[key]]
        gradients = iter(torch.autograd.grad(answer.sum(), tensors))
    collector = _Collector()
    for layer, site in keys:
        effect = sum(-(x.detach() * next(gradients)).float().sum(1) for x in stored[layer, site])
        if site == "attn.hook_z":
            effect = effect.view(len(prompt_ids), adapter.n_heads, adapter.head_dim).sum(-1)
        collector.add(layer, site, "attribution", counts, effect)
    return collector.table(prompt_ids)


def cache_activations(
    model,
    tokenizer,
    prompts: Sequence[dict],
    answers: Iterable[dict],
    answer_spec,
    positions: str = "all",
    batch_size: int = 8,
    attribution: bool = True,
    attribution_batch_size: int = 2,
    sequence_prefix: str | None = None,
    progress=None,
    readout: dict | None = None,
):
    """Yield the cache of one domain batch by batch (Arrow tables of CACHE_SCHEMA): bounded memory.

    `sequence_prefix`: the assistant prefix the baseline answers followed (default the domain's prefix; empty
    for decoded answers read without one). Attribution goes through the exact readout when `readout` is its
    settings, else through the expected readout, both with the prefix.
    """
    prefix = answer_spec.prefix if sequence_prefix is None else sequence_prefix
    by_prompt = defaultdict(list)
    for row in answers:
        by_prompt[row["prompt_id"]].append(row)
    candidates = Candidates.build(tokenizer, answer_spec.grid, answer_spec.prefix) if attribution else None
    starts = range(0, len(prompts), batch_size)
    for start in progress(starts, desc="activations", unit="batch") if progress else starts:
        rows = prompts[start : start + batch_size]
        sequences = [
            build_sequence(
                tokenizer,
                row,
                baseline_answer(by_prompt[row["prompt_id"]], answer_spec.grid, prefix),
                prefix,
            )
            for row in rows
        ]
        tables = [cache_batch(model, tokenizer, sequences, positions)]
        if attribution:  # smaller batches: the backward through every candidate's logits dominates memory
            for part in range(0, len(rows), attribution_batch_size):
                chunk = rows[part : part + attribution_batch_size]
                tables.append(
                    attribution_batch(
                        model,
                        tokenizer,
                        chunk,
                        candidates,
                        answer_spec.grid,
                        answer_spec.prefix,
                        readout,
                        [min(by_prompt[row["prompt_id"]], key=lambda a: a["sample"]) for row in chunk],
                    )
                )
        yield pa.concat_tables(tables)


def write_cache(batches: Iterable[pa.Table], path, provenance: dict) -> int:
    """Stream cache batches into one Parquet file, atomically, provenance in its metadata; rows written."""
    schema = CACHE_SCHEMA.with_metadata(provenance_metadata(provenance))
    rows = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for table in batches:
            writer.write_table(table.replace_schema_metadata(schema.metadata))
            rows += table.num_rows
    return rows

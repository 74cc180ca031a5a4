"""Collateral damage of masks (rule `damage`): the mean KL(base || pruned) of next-token distributions over
every position of the name-free neutral prompts, for every mask of a file and each of its controls (drawn
and applied as in evaluation). The neutral prompts name nobody, so a `from_name` direction edit acts here
from the first token of the user's message on, as if the message began with a name: every position of the
message and after it, never the chat template's system turn (an `all` edit acts everywhere)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import torch

from .decoding import encode_left_padded
from .directions import name_tokens
from .evaluate import Evaluation, applied, controls, mask_of
from .tokens import chat_prompt


@torch.inference_mode()
def next_token_log_probs(model, tokenizer, texts: Sequence[str], batch_size: int = 8) -> list[torch.Tensor]:
    """Per neutral prompt, log-probabilities of the next token at every position (positions x vocab)."""
    chats, out = [chat_prompt(tokenizer, text) for text in texts], []
    for start in range(0, len(chats), batch_size):
        batch = encode_left_padded(tokenizer, chats[start : start + batch_size], model.device)
        logits = model(**batch, use_cache=False).logits.float().log_softmax(-1)
        for row, keep in zip(logits, batch["attention_mask"].bool(), strict=True):
            out.append(row[keep].cpu())
    return out


def mean_kl(base: Sequence[torch.Tensor], pruned: Sequence[torch.Tensor]) -> float:
    """Mean over every position of every prompt of KL(base || pruned) (nats)."""
    total, positions = 0.0, 0
    for p, q in zip(base, pruned, strict=True):
        p, q = p.double(), q.double()  # float32 sums of near-equal terms can dip below zero
        total += float((p.exp() * (p - q)).sum())
        positions += p.shape[0]
    return total / positions


DAMAGE_SCHEMA = pa.schema(
    [
        ("condition", pa.string()),
        ("setting", pa.string()),
        ("control", pa.string()),
        ("seed", pa.int32()),
        ("n_pruned", pa.int64()),
        ("kl", pa.float64()),  # mean KL(base || pruned) per neutral-prompt position, nats
    ]
)


def damage_table(
    model, tokenizer, manifest: dict, masks: dict, texts: Sequence[str], ablation="zero", means=None
) -> pa.Table:
    """Collateral damage of every mask of a file (and of its random controls) on the neutral prompts."""
    base = next_token_log_probs(model, tokenizer, texts)
    # where a from_name edit starts on name-free text: the message's first characters stand in for a name
    starts = ()
    if manifest["unit"] == "directions":
        spans = [{"text": t, "name_spans": [{"start": 0, "end": min(12, len(t))}]} for t in texts]
        starts = name_tokens(tokenizer, spans)
    rows = []
    for condition in manifest["conditions"]:
        for setting in manifest["settings"]:
            for control, seed in controls(manifest, condition, setting):
                evaluation = Evaluation(condition, setting, control, seed, (), False)
                mask = mask_of(evaluation, manifest, masks, ablation, means)
                kl = 0.0
                if mask.count():
                    with applied(model, mask, starts):
                        kl = mean_kl(base, next_token_log_probs(model, tokenizer, texts))
                rows.append(
                    {
                        "condition": condition,
                        "setting": setting,
                        "control": control,
                        "seed": seed,
                        "n_pruned": mask.count(),
                        "kl": kl,
                    }
                )
    return pa.Table.from_pylist(rows, schema=DAMAGE_SCHEMA)

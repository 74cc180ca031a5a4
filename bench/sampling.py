"""Sampling speed: the cached, batched sampler against the authors' way (one generate call per sample, batch
size 1), same prompts, n and max_new_tokens, measured in the same run. Goal: at least 20x.

    .venv/bin/python bench/sampling.py [--prompts 2] [--n 100]   (the paper's n; about two minutes)
"""

import argparse

import torch
from common import embedded_model, purchase_prompts, timed

from biasprune.decoding import decode
from biasprune.tokens import chat_prompt

parser = argparse.ArgumentParser()
parser.add_argument("--prompts", type=int, default=2)
parser.add_argument("--n", type=int, default=100)
parser.add_argument("--max-new-tokens", type=int, default=10)
args = parser.parse_args()

model, tokenizer = embedded_model()
rows, answer = purchase_prompts(args.prompts)
chats = [chat_prompt(tokenizer, row["text"], answer.prefix) for row in rows]
settings = {"max_new_tokens": args.max_new_tokens, "temperature": 0.6, "top_p": 0.9}


def reference():
    torch.manual_seed(0)
    for chat in chats:
        ids = tokenizer(chat, return_tensors="pt", add_special_tokens=False)
        for _ in range(args.n):
            with torch.inference_mode():
                model.generate(**ids, do_sample=True, pad_token_id=tokenizer.pad_token_id, **settings)


def ours():
    decode(model, tokenizer, chats, n=args.n, generator=torch.Generator().manual_seed(0), **settings)


ours()  # warm-up
fast = timed(ours, repeat=3)
slow = timed(reference)
total = args.prompts * args.n
print(f"{args.prompts} prompts x {args.n} samples x {args.max_new_tokens} new tokens")
print(f"reference (generate per sample, batch 1): {slow:8.2f} s  ({total / slow:7.1f} samples/s)")
print(f"cached batched sampler:                   {fast:8.2f} s  ({total / fast:7.1f} samples/s)")
print(f"speed-up: {slow / fast:.1f}x (goal: at least 20x)")

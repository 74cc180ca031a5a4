"""Throughput of the expected-value readout as a fraction of this machine's float32 matmul rate, measured in
the same run. Counts the model's matmul work (linear layers, attention scores and mixing, the logits that
are computed). Goal: at least 70%.

    .venv/bin/python bench/expected_throughput.py [--prompts 8]
"""

import argparse

import torch
from common import embedded_model, purchase_prompts, timed

from biasprune.decoding import encode_left_padded, split_prefix
from biasprune.grid import Candidates, grid_log_probs
from biasprune.models import LINEARS, ModelAdapter
from biasprune.tokens import chat_prompt

parser = argparse.ArgumentParser()
parser.add_argument("--prompts", type=int, default=8)
parser.add_argument("--size", type=int, default=2048, help="side of the reference square matmul")
args = parser.parse_args()

model, tokenizer = embedded_model()
rows, answer = purchase_prompts(args.prompts)
candidates = Candidates.build(tokenizer, answer.grid, answer.prefix)
prompt_part, _ = split_prefix(answer.prefix)
batch = encode_left_padded(
    tokenizer, [chat_prompt(tokenizer, row["text"], prompt_part) for row in rows], "cpu"
)

adapter = ModelAdapter.of(model)
linear = sum(
    adapter.linear(layer, name).weight.numel() for layer in range(adapter.n_layers) for name in LINEARS
)
vocab = model.get_output_embeddings().weight.shape[0]
prompts, length = batch["input_ids"].shape
nodes = len(candidates.node_token)
positions = prompts * (length + nodes)
context = prompts * (length * (length + 1) / 2 + nodes * (length + nodes))  # keys seen by each query
attention = 2 * 2 * adapter.n_layers * adapter.n_heads * adapter.head_dim * context
flops = 2 * linear * positions + 2 * adapter.d_model * vocab * prompts * (1 + nodes) + attention


def readout():
    with torch.inference_mode():
        grid_log_probs(model, batch, candidates, len(answer.grid))


a = torch.randn(args.size, args.size)
b = torch.randn(args.size, args.size)
readout()
matmul_seconds = timed(lambda: a @ b, repeat=10)
readout_seconds = timed(readout, repeat=3)
matmul_rate = 2 * args.size**3 / matmul_seconds
readout_rate = flops / readout_seconds
print(
    f"{prompts} prompts x {length} tokens + {nodes} candidate-trie tokens each ({len(answer.grid)} grid values)"
)
print(f"float32 matmul {args.size}x{args.size}: {matmul_rate / 1e9:7.1f} GFLOP/s")
print(
    f"expected readout: {positions / readout_seconds:7.0f} tokens/s, {readout_rate / 1e9:7.1f} GFLOP/s of matmul work"
)
print(f"fraction of the matmul rate: {readout_rate / matmul_rate:.0%} (goal: at least 70%)")

"""Switching masks: applying and removing one mask on the loaded model (as rule `evaluate` does: weight
edits restored on exit, hooks for mean ablation) against one evaluation pass over the same prompts with
that mask applied, measured in the same run. Goal: under 5% of a pass, for every unit.

    .venv/bin/python bench/switch_cost.py [--prompts 32]
"""

import argparse

import torch
from common import embedded_model, purchase_prompts, timed

from biasprune.ablation import Mask, head_means, masked
from biasprune.evaluate import application
from biasprune.models import LINEARS, ModelAdapter
from biasprune.readouts import read_answers

parser = argparse.ArgumentParser()
parser.add_argument("--prompts", type=int, default=32)
args = parser.parse_args()

model, tokenizer = embedded_model()
adapter = ModelAdapter.of(model)
rows, answer = purchase_prompts(args.prompts)
settings = {"mode": "expected", "batch_size": 8}
generator = torch.Generator().manual_seed(0)


def share(shape, fraction):
    return torch.rand(shape, generator=generator) < fraction


masks = {
    # The paper's weight masks touch every matrix (a few % of entries each): the costliest switch.
    "weights (edit)": Mask(
        "weights",
        {
            f"{layer}.{name}": share(adapter.linear(layer, name).weight.shape, 0.03)
            for layer in range(adapter.n_layers)
            for name in LINEARS
        },
    ),
    "neurons (edit)": Mask(
        "neurons", {str(layer): share(adapter.d_mlp, 0.01) for layer in range(adapter.n_layers)}
    ),
    "heads zero (edit)": Mask(
        "heads", {str(layer): share(adapter.n_heads, 0.04) for layer in range(adapter.n_layers)}
    ),
}
means = head_means(model, tokenizer, ["What is the capital of France?", "Name three colours."])
masks["heads mean (hooks)"] = Mask("heads", masks["heads zero (edit)"].keys, "mean", means)


def switch(mask):
    def run():
        with masked(model, mask, application(mask)):
            pass

    return run


def evaluation_pass(mask):
    def run():
        with masked(model, mask, application(mask)):
            read_answers(model, tokenizer, rows, answer, settings)

    return run


print(f"{len(rows)} purchase prompts, expected readout, batches of {settings['batch_size']}")
for label, mask in masks.items():
    switch(mask)()  # warm-up
    cost = timed(switch(mask), repeat=5)
    reference = timed(evaluation_pass(mask), repeat=1)
    print(
        f"{label:20s} switch {cost * 1000:8.1f} ms  pass {reference:6.2f} s  "
        f"-> {cost / reference:.2%} of a pass (goal: under 5%)"
    )

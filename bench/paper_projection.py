"""The paper's design on Llama-3-8B on one H200-class GPU, projected (nothing here runs the 8B model).

1. Counted from the config by the workflow's own planning functions: prompts per domain, every evaluation
   each `evaluate` job reads (`evaluate.evaluations` on a manifest in which every mask is non-empty and every
   generic control exists: an upper bound), the damage passes on the neutral prompts, the model-loading jobs.
2. Measured here: the tokens a forward pass processes (padding included) for one read of one prompt with the
   configured model's readout (the paper's: 100 sampled answers of at most 10 tokens), one baseline forward of
   the activation cache and one damage pass, on the embedded model and its tokenizer (Llama-3's chat template
   and tokenizer give somewhat different counts; a stand-in, said so).
3. Projected: each forward pass takes the longer of its tokens x 2 FLOP per matrix parameter of Llama-3-8B
   (7.50e9: every linear layer and the unembedding, not the embedding lookup) at 989 TFLOP/s (an H200's dense
   bfloat16 peak) x --utilisation, and one read of the 16 GB of weights at 4.8 TB/s (what bounds a small
   decoding step); plus each model-loading job's start (--load-s: reading 16 GB and starting CUDA). The
   attribution cache adds a backward pass (2x the forward's FLOPs). CPU-only jobs (scores, masks, metrics,
   report) are not counted.

    .venv/bin/python bench/paper_projection.py [--configfile config/paper.yaml] [--utilisation 0.3]
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
import yaml
from common import ROOT, embedded_model
from snakemake.utils import update_config

from biasprune.activations import build_sequence
from biasprune.damage import next_token_log_probs
from biasprune.evaluate import controls, evaluations
from biasprune.jobs import Jobs
from biasprune.methods import UNITS
from biasprune.prompts import prompt_table
from biasprune.readouts import read_answers
from biasprune.specs import Answer
from biasprune.study import load_study
from biasprune.vocabulary import scope_selections, settings

MATRIX_PARAMETERS = 8_030_261_248 - 128_256 * 4096  # Llama-3-8B without its embedding lookup
PEAK_FLOPS = 989e12  # H200 SXM, dense bfloat16
BANDWIDTH = 4.8e12  # H200 HBM3e, bytes/s
WEIGHT_BYTES = 2 * 8_030_261_248  # bfloat16

parser = argparse.ArgumentParser()
parser.add_argument("--configfile", default="config/paper.yaml")
parser.add_argument("--model", default="llama-3-8b-instruct", help="the registry entry whose readout is used")
parser.add_argument("--utilisation", type=float, default=0.3, help="share of the peak FLOP rate reached")
parser.add_argument("--load-s", type=float, default=20.0, help="seconds to start a model-loading job")
parser.add_argument("--prompts", type=int, default=8, help="prompts of the first domain measured")
args = parser.parse_args()

config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
update_config(config, yaml.safe_load((ROOT / args.configfile).read_text()))
study = load_study(config, args.configfile, ROOT)
jobs = Jobs(study)
names = len(study.names)
prompts = {domain: names * len(variations) for domain, variations in study.variations.items()}
variations = {domain: list(values) for domain, values in study.variations.items()}

# 1. Counts: reads (one prompt read once), damage passes, model-loading jobs.
reads, damage, loads = Counter(), 0, Counter()
for unit, _method in study.score_sets:
    for scope in config["masks"]["scopes"]:
        parameters = jobs.masks(unit=unit, scope=scope)
        named = settings(unit, parameters)
        manifest = {
            "scope": scope,
            "settings": named,
            "random_seeds": list(range(parameters["random_seeds"])),
            "matched_seeds": list(range(parameters["matched_seeds"])),
            "generic": parameters["generic"],
            "conditions": {
                name: {
                    "selection": selection,
                    "counts": {key: {"k": 1} for key in named},
                    "generic": dict.fromkeys(named, 1),
                }
                for name, selection in scope_selections(scope, variations).items()
            },
        }
        cross = jobs.evaluate(unit=unit, scope=scope).get("cross_in_sample", False)
        for domain in study.domains:
            found = evaluations(manifest, domain, variations[domain], cross)
            reads[unit] += sum(len(e.variations) for e in found) * names
            loads["evaluate"] += 1
        # damage: every mask of the file and its controls, each one pass over the neutral prompts
        damage += sum(len(controls(manifest, c, s)) for c in manifest["conditions"] for s in named)
        loads["damage"] += 1  # (a weights masks job loads the model on the CPU: no GPU time)
baseline = sum(prompts.values())
loads |= {"answers": len(prompts), "activations": len(prompts), "residuals": len(prompts), "model_check": 1}

# 2. Tokens per read, per cached prompt and per neutral prompt, measured on the embedded model.
model, tokenizer = embedded_model()
domain = study.domains[next(iter(study.domains))]
suffix = config["prompts"]["answer_suffix"]
rows = prompt_table(domain, domain.variations[:1], list(study.names), study.groups, suffix).to_pylist()
rows = rows[:: max(1, len(rows) // args.prompts)][: args.prompts]  # both groups' names
readout = {"batch_size": 8, **jobs.readout(model=args.model)}
calls = {"read": [], "cache": [], "neutral": []}  # tokens of each forward pass
current = ["read"]
model.get_input_embeddings().register_forward_hook(lambda m, i, o: calls[current[0]].append(i[0].numel()))
read_answers(model, tokenizer, rows, Answer(**jobs.answer(domain=domain.key)), readout)
current[0] = "cache"
with torch.inference_mode():
    for row in rows:
        sequence = build_sequence(
            tokenizer, row, "100", jobs.sequence_prefix(model=args.model, domain=domain.key)
        )
        model(torch.tensor([sequence.ids]))
current[0] = "neutral"
next_token_log_probs(model, tokenizer, list(study.neutral))

# 3. The projection: a forward pass takes the longer of its FLOPs at the assumed rate and one read of the
# weights from memory (what bounds the small decoding steps).
rate, flops_per_token = PEAK_FLOPS * args.utilisation, 2 * MATRIX_PARAMETERS


def gpu_seconds(sizes, bound=True):
    return sum(max(n * flops_per_token / rate, WEIGHT_BYTES / BANDWIDTH if bound else 0) for n in sizes)


per_read = gpu_seconds(calls["read"]) / len(rows)
per_neutral = gpu_seconds(calls["neutral"]) / len(study.neutral)
per_cached = gpu_seconds(calls["cache"], bound=False) / len(rows)  # batched in the job: FLOPs only
passes = 3 if config["activations"]["attribution"] else 1  # a backward pass costs about two forwards
work = {
    "baseline reads (answers)": (baseline, baseline * per_read),
    **{f"evaluation reads, {unit}": (reads[unit], reads[unit] * per_read) for unit in UNITS if reads[unit]},
    "damage passes (neutral prompts)": (damage, damage * len(study.neutral) * per_neutral),
    "activation and residual caches": (baseline, baseline * per_cached * (passes + 1)),
    "model-loading job starts": (sum(loads.values()), sum(loads.values()) * args.load_s),
}
print(
    f"{args.configfile}: {len(study.domains)} domains, {names} names, {baseline} prompts; readout "
    f"{readout['mode']} (n={readout['sample']['n'] if readout['mode'] == 'sample' else 1})"
)
print(
    f"measured on {len(rows)} prompts with the embedded model's tokenizer: {sum(calls['read']) / len(rows):,.0f} "
    f"tokens in {len(calls['read']) / len(rows):.2f} forward passes per read, "
    f"{sum(calls['cache']) / len(rows):,.0f} tokens per cached prompt, "
    f"{sum(calls['neutral']) / len(study.neutral):,.0f} per neutral prompt"
)
print(
    f"assumed: {rate / 1e12:.0f} TFLOP/s ({args.utilisation:.0%} of {PEAK_FLOPS / 1e12:.0f}), "
    f"{flops_per_token / 1e9:.1f} GFLOP per token, a pass at least {WEIGHT_BYTES / BANDWIDTH * 1e3:.1f} ms "
    f"(16 GB of weights at {BANDWIDTH / 1e12:.1f} TB/s), {args.load_s:.0f} s per job start"
)
print(f"GPU seconds per read: {per_read:.3f}")
print(f"\n{'work':<36} {'count':>10} {'GPU hours':>10}")
for what, (count, seconds) in work.items():
    print(f"{what:<36} {count:>10,} {seconds / 3600:>10.2f}")
print(f"{'total':<36} {'':>10} {sum(seconds for _, seconds in work.values()) / 3600:>10.2f}")

"""Rule `masks`: the masks of one scope for one unit and method, from the scores of every domain."""

import json
from pathlib import Path

import pandas as pd

from biasprune.bits import TensorWriter
from biasprune.folds import held_out
from biasprune.io import atomic_path
from biasprune.logs import log_to
from biasprune.masks import build_fold_masks
from biasprune.metrics import labelled_answers, variation_smds
from biasprune.models import load_model

with log_to(snakemake.log[0]):
    unit, method, scope = snakemake.wildcards.unit, snakemake.wildcards.method, snakemake.wildcards.scope
    scores = {Path(path).stem: pd.read_parquet(path) for path in snakemake.input.scores}
    model = None
    if unit == "weights":  # the Wanda score multiplies the cached norms by the weights
        runtime = snakemake.params.model
        model, _ = load_model(snakemake.input.model, "cpu", runtime["dtype"])
    folds = snakemake.params.folds
    smds = None
    if snakemake.params.signs:  # a method ranked against the bias reads the SMDs' signs (of its own names)
        answers = labelled_answers(snakemake.input.answers, snakemake.input.prompts)
        smds = {
            fold: variation_smds(
                answers[~answers["name"].isin(names)],
                snakemake.params.groups,
                snakemake.params.signs["winsorize"],
            )
            for fold, names in held_out(folds).items()
        }
    with TensorWriter(Path(snakemake.output.masks).parent) as writer:
        manifest = build_fold_masks(
            unit,
            method,
            scope,
            scores,
            snakemake.params.parameters,
            snakemake.params.groups,
            writer,
            folds,
            smds=smds,
            model=model,
        )
        manifest["model"] = snakemake.wildcards.model
        writer.save(snakemake.output.masks)
    with atomic_path(snakemake.output.manifest) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    for name, entry in manifest["conditions"].items():
        print(name, {setting: sum(counts.values()) for setting, counts in entry["counts"].items()})

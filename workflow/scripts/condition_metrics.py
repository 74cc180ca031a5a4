"""Rule `condition_metrics`: every condition against the unpruned model, and the transfer matrix."""

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from biasprune.conditions import condition_tables
from biasprune.io import write_parquet
from biasprune.logs import log_to

LABELS = ["prompt_id", "domain", "variation", "name", "race"]


def labelled(path, labels):
    return pd.read_parquet(path).merge(labels, on="prompt_id", validate="many_to_one")


with log_to(snakemake.log[0]):
    labels = pd.concat([pd.read_parquet(path, columns=LABELS) for path in snakemake.input.prompts])
    base = pd.concat([labelled(path, labels) for path in snakemake.input.answers], ignore_index=True)
    # The inputs list every mask file's tables in the order of params.sets (evaluations: each set's domains).
    sets, domains = snakemake.params.sets, snakemake.params.domains
    each_domain = [mask_set for mask_set in sets for _ in domains]
    evaluated = [
        labelled(path, labels).assign(**set_labels)
        for path, set_labels in zip(snakemake.input.evaluated, each_domain, strict=True)
    ]
    damage = pd.concat(
        [
            pd.read_parquet(path).assign(**set_labels)
            for path, set_labels in zip(snakemake.input.damage, sets, strict=True)
        ],
        ignore_index=True,
    )
    manifests = [json.loads(Path(path).read_text()) for path in snakemake.input.manifests]
    conditions, transfer, names = condition_tables(
        evaluated, damage, manifests, base, snakemake.params.groups, snakemake.params.metrics
    )
    conditions.insert(0, "model", snakemake.wildcards.model)
    transfer.insert(0, "model", snakemake.wildcards.model)
    provenance = {"metrics": snakemake.params.metrics}
    outputs = {"conditions": conditions, "transfer": transfer, "names": names}
    for key, table in outputs.items():
        path = getattr(snakemake.output, key)
        write_parquet(pa.Table.from_pandas(table, preserve_index=False), path, provenance)
    with pd.option_context("display.width", 220, "display.max_columns", 14, "display.max_rows", 200):
        print(
            transfer[
                ["unit", "method", "setting", "selection", "evaluated", "reduction", "matched_reduction_mean"]
            ]
        )

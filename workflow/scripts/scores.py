"""Rule `scores`: one unit's scores by one method for one domain, aggregated from the cache."""

import pandas as pd

from biasprune.folds import per_fold, without
from biasprune.io import read_provenance, write_parquet
from biasprune.logs import log_to
from biasprune.scores import score

with log_to(snakemake.log[0]):
    unit, method = snakemake.wildcards.unit, snakemake.wildcards.method
    labels = pd.read_parquet(snakemake.input.prompts, columns=["prompt_id", "variation", "name", "race"])
    answers = pd.read_parquet(snakemake.input.answers, columns=["prompt_id", "value", "valid"])
    answers = answers[answers["valid"]].merge(labels, on="prompt_id")
    # once on all names, once per fold on the names it does not hold out (folds.py)
    table = per_fold(
        snakemake.params.folds,
        lambda held_out: score(
            unit,
            method,
            snakemake.input.cache,
            without(labels, held_out),
            snakemake.params.groups,
            answers[~answers["name"].isin(held_out)],
            snakemake.params.scoring,
        ),
    )
    provenance = {
        "unit": unit,
        "method": method,
        "scoring": snakemake.params.scoring,
        "folds": snakemake.params.folds,
        "cache": read_provenance(snakemake.input.cache),
    }
    write_parquet(table, snakemake.output.scores, provenance)
    print(f"{unit}/{method}: {table.num_rows} score vectors")

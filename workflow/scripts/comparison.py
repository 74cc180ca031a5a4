"""Rule `comparison`: the models of the study side by side (tables, figures on one scale, standalone HTML)."""

import json
from pathlib import Path

import pandas as pd

from biasprune.io import atomic_path
from biasprune.logs import log_to
from biasprune.report import comparison, figures

with log_to(snakemake.log[0]):
    models = snakemake.params.comparison["models"]
    manifests = snakemake.input.manifests
    per_model = len(manifests) // len(models)  # model-major, the same units and methods for every model
    if per_model * len(models) != len(manifests):
        raise ValueError(f"{len(manifests)} manifests do not split evenly over {len(models)} models")
    runs = {
        model: comparison.ModelRun(
            baseline=pd.read_parquet(snakemake.input.baseline[i]),
            transfer=pd.read_parquet(snakemake.input.transfer[i]),
            findings=pd.read_parquet(snakemake.input.findings[i]),
            manifests=[
                json.loads(Path(p).read_text()) for p in manifests[i * per_model : (i + 1) * per_model]
            ],
            check=json.loads(Path(snakemake.input.model_check[i]).read_text()),
        )
        for i, model in enumerate(models)
    }
    tables = comparison.comparison_tables(runs)
    for name, table in tables.items():
        with atomic_path(snakemake.output[name]) as tmp:
            table.to_csv(tmp, index=False)
    drawn = comparison.figure_tables(tables)
    for name, draw in figures.COMPARISON.items():
        figures.save(draw(drawn[name]), snakemake.output[f"{name}_png"], snakemake.output[f"{name}_svg"])
    inputs = {
        f"{model}/{Path(path).name}": path
        for i, model in enumerate(models)
        for path in (snakemake.input.baseline[i], snakemake.input.transfer[i], snakemake.input.findings[i])
    }
    html = comparison.comparison_html(
        tables,
        drawn["placement"],
        checks={model: run.check for model, run in runs.items()},
        figures_png=[(name, snakemake.output[f"{name}_png"]) for name in figures.COMPARISON],
        provenance_rows=comparison.provenance(inputs, snakemake.params.snakemake_version),
    )
    with atomic_path(snakemake.output.html) as tmp:
        tmp.write_text(html)
    print(f"comparison of {', '.join(models)}: {len(html) / 1e6:.1f} MB")

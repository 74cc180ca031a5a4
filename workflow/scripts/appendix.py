"""Rule `appendix`: the standalone HTML appendix of one model's run."""

import json
from pathlib import Path

import pandas as pd

from biasprune.io import atomic_path
from biasprune.logs import log_to
from biasprune.report.appendix import appendix_html

with log_to(snakemake.log[0]):
    html = appendix_html(
        snakemake.params.config,
        check=json.loads(Path(snakemake.input.model_check).read_text()),
        source=json.loads((Path(snakemake.input.model) / "biasprune-source.json").read_text()),
        prompt_files=snakemake.input.prompts,
        figures=zip(snakemake.params.figures, snakemake.input.figures, strict=True),
        tables={
            name: pd.read_parquet(getattr(snakemake.input, name))
            for name in ("baseline", "transfer", "conditions", "findings")
        },
        snakemake_version=snakemake.params.snakemake_version,
    )
    with atomic_path(snakemake.output.html) as tmp:
        tmp.write_text(html)
    print(f"appendix: {len(html) / 1e6:.1f} MB, {len(snakemake.params.figures)} figures")

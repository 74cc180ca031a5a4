"""Rule `neutral_prompts`: the name-free prompts, checked to contain none of the study's names."""

from pathlib import Path

from biasprune.io import sha256_file, write_parquet
from biasprune.logs import log_to
from biasprune.prompts import neutral_table
from biasprune.study import load_names, load_neutral

with log_to(snakemake.log[0]):
    names = load_names(Path(snakemake.input.names), tuple(snakemake.params.groups), snakemake.params.names)
    prompts = load_neutral(Path(snakemake.input.neutral), [row["name"] for row in names])
    table = neutral_table(prompts)
    write_parquet(table, snakemake.output.table, {"source": sha256_file(snakemake.input.neutral)})
    print(f"neutral: {table.num_rows} prompts")

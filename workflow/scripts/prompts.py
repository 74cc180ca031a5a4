"""Rule `prompts`: the prompt table of one domain."""

from pathlib import Path

from biasprune.io import sha256_file, write_parquet
from biasprune.logs import log_to
from biasprune.prompts import prompt_table
from biasprune.study import load_domain, load_names

with log_to(snakemake.log[0]):
    spec = snakemake.params.spec
    domain_file = Path(snakemake.input.domain)
    domain = load_domain(domain_file.stem, domain_file.parent)
    names = load_names(Path(snakemake.input.names), tuple(spec["groups"]), spec["names"])
    table = prompt_table(domain, spec["variations"], names, spec["groups"], spec["answer_suffix"])
    sources = {str(path): sha256_file(path) for path in snakemake.input}
    write_parquet(table, snakemake.output.table, {"domain": domain.key, "sources": sources, **spec})
    print(f"{domain.key}: {table.num_rows} prompts")

"""Rule `answers`: read every prompt of one domain with the model's readout."""

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from biasprune.io import sha256_file, write_parquet
from biasprune.logs import log_to
from biasprune.models import load_model
from biasprune.readout_modes import readout as registry_readout
from biasprune.readouts import ANSWER_SCHEMA, read_answers
from biasprune.specs import Answer

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = snakemake.params.model
    readout = {"batch_size": snakemake.resources.batch_size, **snakemake.params.readout}
    answer = Answer(**snakemake.params.answer)
    model, tokenizer = load_model(snakemake.input.model, spec["device"], spec["dtype"])
    prompts = pq.read_table(snakemake.input.prompts).to_pylist()
    # The explored tree is kept where attribution differentiates this readout through it (activations).
    keep_tree = registry_readout(readout["mode"]).attribution == "exact"
    columns = read_answers(model, tokenizer, prompts, answer, readout, progress=tqdm, keep_tree=keep_tree)
    table = pa.Table.from_pydict(columns, schema=ANSWER_SCHEMA)
    provenance = {
        "model": snakemake.wildcards.model,
        "readout": readout,
        "answer": snakemake.params.answer,
        "prompts_sha256": sha256_file(snakemake.input.prompts),
        "torch": torch.__version__,
    }
    write_parquet(table, snakemake.output.answers, provenance)
    valid = sum(columns["valid"])
    print(f"{len(prompts)} prompts, {table.num_rows} answers, {valid} valid")

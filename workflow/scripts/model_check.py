"""Rule `model_check`: load the model, record its geometry and a greedy answer to the first prompt."""

import json
import time
from importlib.metadata import version

import pyarrow.parquet as pq
import torch

from biasprune.io import atomic_path
from biasprune.logs import log_to
from biasprune.models import ModelAdapter, greedy_answer, load_model
from biasprune.tokens import default_system_line

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = snakemake.params.spec
    start = time.perf_counter()
    model, tokenizer = load_model(snakemake.input.model, spec["device"], spec["dtype"])
    load_seconds = time.perf_counter() - start
    prompt = pq.read_table(snakemake.input.prompts).slice(0, 1).to_pylist()[0]
    answer = greedy_answer(model, tokenizer, prompt["text"], snakemake.params.prefix)
    report = {
        "model": snakemake.wildcards.model,
        **ModelAdapter.of(model).describe(),
        "device": str(model.device),
        "dtype": str(model.dtype),
        "load_seconds": round(load_seconds, 2),
        "prompt_id": prompt["prompt_id"],
        "prompt": prompt["text"],
        "prefix": snakemake.params.prefix,
        "greedy_answer": answer,
        "default_system_line": default_system_line(tokenizer),
        # The model jobs' own environment (the report jobs may run in another conda env).
        "versions": {
            name: version(name) for name in ("torch", "transformers", "safetensors", "concept-erasure")
        },
    }
    print(json.dumps(report, indent=2))
    with atomic_path(snakemake.output.check) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")

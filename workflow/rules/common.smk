# All Python the rules use: config validation (first), wildcard constraints, targets, params helpers.
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from biasprune.errors import ConfigError
from snakemake import __version__ as SNAKEMAKE_VERSION
from snakemake.exceptions import WorkflowError
from biasprune.study import load_study

CONFIG_FILE = ", ".join(map(str, workflow.configfiles)) or "config"

try:
    STUDY = load_study(config, CONFIG_FILE)
except ConfigError as error:
    sys.exit(f"biasprune: {error}")

# The domain whose first prompt the model check answers.
FIRST_DOMAIN = STUDY.domains[STUDY.config["domains"][0]]


wildcard_constraints:
    domain="|".join(map(re.escape, STUDY.domains)),
    model="|".join(map(re.escape, STUDY.models)),
    unit="weights|neurons|heads",
    method="wanda|activation|attribution|name_attention|greedy_attention",
    scope="variation|loo|domain|cross",


def get_final_output():
    """Every file the study ends in (as far as the chain exists)."""
    return [
        *expand("results/prompts/{domain}.parquet", domain=STUDY.domains),
        "results/prompts/neutral.parquet",
        *expand("results/{model}/model_check.json", model=STUDY.models),
        *expand("results/{model}/metrics/baseline.parquet", model=STUDY.models),
        *[
            f"results/{model}/scores/{unit}/{method}/{domain}.parquet"
            for model in STUDY.models
            for unit, method in STUDY.score_sets
            for domain in STUDY.domains
        ],
        *[
            f"results/{model}/masks/{unit}/{method}/{scope}.safetensors"
            for model in STUDY.models
            for unit, method in STUDY.score_sets
            for scope in STUDY.config["masks"]["scopes"]
        ],
        *expand("results/{model}/metrics/conditions.parquet", model=STUDY.models),
        *expand("reports/{model}/tables/findings.csv", model=STUDY.models),
        *expand("reports/{model}/appendix.html", model=STUDY.models),
    ]


def domain_inputs(wildcards):
    """The files a domain's prompt table is made from (so editing one reruns only that domain)."""
    domain = STUDY.domains[wildcards.domain]
    files = {"domain": domain.file, "names": STUDY.config["names"]["table"]}
    if domain.table is not None:
        files["table"] = domain.table.path
    return files


def domain_params(wildcards):
    """Everything of the config that shapes a domain's prompts (a change reruns that domain)."""
    return {
        "variations": list(STUDY.variations[wildcards.domain]),
        "names": STUDY.config["names"]["include"],
        "groups": list(STUDY.groups),
        "answer_suffix": STUDY.config["prompts"]["answer_suffix"],
    }


def model_source(wildcards):
    """Where {model} comes from (fetch_model's params: a change here refetches the model)."""
    return STUDY.model_source(wildcards.model)


def model_gpus(wildcards):
    return STUDY.model(wildcards.model)["gpus"]


def readout_params(wildcards):
    """The readout of {model} (config `readout` with the model's mode): a change reruns its answers."""
    return STUDY.readout(wildcards.model)


def answer_spec(wildcards):
    """What readouts read of the domain's answer: the assistant prefix and the candidate grid."""
    answer = STUDY.domains[wildcards.domain].answer
    return {"prefix": answer.prefix, "grid": list(answer.grid)}


def attribution_readout(wildcards):
    """The exact readout's settings when attribution scores go through it (else None: the expected readout)."""
    readout = STUDY.readout(wildcards.model)
    through_exact = (
        readout["mode"] == "exact" and STUDY.config["activations"]["attribution"]
    )
    return readout if through_exact else None


def sequence_prefix(wildcards):
    """The prefix the baseline answers were read after (the cache appends them to the same text)."""
    readout = STUDY.readout(wildcards.model)
    prefixed = readout["mode"] == "expected" or readout["use_prefix"]
    return STUDY.domains[wildcards.domain].answer.prefix if prefixed else ""


def model_runtime(wildcards):
    """How model jobs load {model}: device and dtype (not `gpus`, a resource that changes no result)."""
    return STUDY.model_runtime(wildcards.model)


def scoring_params(wildcards):
    """The parameters of {unit}/{method}: a change reruns those scores and nothing upstream."""
    return STUDY.scoring_parameters(wildcards.unit, wildcards.method)


def greedy_params(wildcards):
    """What the greedy order depends on: the head counts the masks ask for (its number of steps)."""
    heads = STUDY.config["masks"]["heads"]
    return {"share": heads["share"], "k": heads["k"]}


def mask_inputs(wildcards):
    """Scores of {unit}/{method} for every domain, the baseline (signs of the SMDs) and the model (weights)."""
    return {
        "scores": expand(
            "results/{model}/scores/{unit}/{method}/{domain}.parquet",
            **wildcards,
            domain=STUDY.domains,
        ),
        "baseline": f"results/{wildcards.model}/metrics/baseline.parquet",
        "model": f"resources/models/{wildcards.model}",
    }


def mask_params(wildcards):
    """The masks settings of {unit}: a change reruns its masks and what follows, never the scores."""
    return STUDY.mask_parameters(wildcards.unit, wildcards.scope)


def export_inputs(wildcards):
    """The model and the mask file named by config `export` (required for this target)."""
    if "export" not in STUDY.config:
        raise WorkflowError(
            "results/{model}/pruned needs config `export` (unit, method, scope, condition, setting)"
        )
    spec = STUDY.config["export"]
    stem = f"results/{wildcards.model}/masks/{spec['unit']}/{spec['method']}/{spec['scope']}"
    return {
        "model": f"resources/models/{wildcards.model}",
        "masks": f"{stem}.safetensors",
        "manifest": f"{stem}.json",
    }


def mask_stem(wildcards) -> str:
    return f"results/{wildcards.model}/masks/{wildcards.unit}/{wildcards.method}/{wildcards.scope}"


def evaluate_params(wildcards):
    """The evaluation settings a (unit, scope) reads: head ablation for heads, in-sample cells for cross."""
    settings = STUDY.config["evaluate"]
    return {
        **(
            {"head_ablation": settings["head_ablation"]}
            if wildcards.unit == "heads"
            else {}
        ),
        **(
            {"cross_in_sample": settings["cross_in_sample"]}
            if wildcards.scope == "cross"
            else {}
        ),
    }


def damage_inputs(wildcards):
    return {
        "model": f"resources/models/{wildcards.model}",
        "masks": f"{mask_stem(wildcards)}.safetensors",
        "manifest": f"{mask_stem(wildcards)}.json",
        "neutral": "results/prompts/neutral.parquet",
    }


def evaluate_inputs(wildcards):
    """The model, the scope's masks, the domain's prompts and unpruned answers (reused for empty masks);
    the neutral prompts where heads are mean-ablated (their means)."""
    files = damage_inputs(wildcards) | {
        "prompts": f"results/prompts/{wildcards.domain}.parquet",
        "answers": f"results/{wildcards.model}/answers/base/{wildcards.domain}.parquet",
    }
    if evaluate_params(wildcards).get("head_ablation") != "mean":
        del files["neutral"]
    return files


def condition_metrics_inputs(wildcards):
    """Every evaluation, damage table and manifest of {model}, with the unpruned answers and prompt labels."""
    sets = [
        (unit, method, scope)
        for unit, method in STUDY.score_sets
        for scope in STUDY.config["masks"]["scopes"]
    ]
    stem = f"results/{wildcards.model}"
    return {
        "evaluated": [
            f"{stem}/eval/{u}/{m}/{s}/{domain}.parquet"
            for u, m, s in sets
            for domain in STUDY.domains
        ],
        "damage": [f"{stem}/damage/{u}/{m}/{s}.parquet" for u, m, s in sets],
        "manifests": [f"{stem}/masks/{u}/{m}/{s}.json" for u, m, s in sets],
        "answers": expand(
            f"{stem}/answers/base/{{domain}}.parquet", domain=STUDY.domains
        ),
        "prompts": expand("results/prompts/{domain}.parquet", domain=STUDY.domains),
    }


# The appendix's figures, in order.
FIGURES = [
    "baseline",
    "before_after",
    "transfer",
    "units",
    "tradeoff",
    "components",
    "overlap",
]


def placement_scope() -> str:
    """The scope whose masks show where components sit: each domain's common mask where configured."""
    scopes = STUDY.config["masks"]["scopes"]
    return "domain" if "domain" in scopes else scopes[0]


def domain_mask_files(wildcards):
    return [
        f"results/{wildcards.model}/masks/{unit}/{method}/{placement_scope()}.safetensors"
        for unit, method in STUDY.score_sets
    ]


def domain_manifests(wildcards):
    return [
        path.replace(".safetensors", ".json") for path in domain_mask_files(wildcards)
    ]


def appendix_inputs(wildcards):
    stem = f"results/{wildcards.model}"
    return {
        "figures": expand(
            f"reports/{wildcards.model}/figures/{{name}}.png", name=FIGURES
        ),
        "baseline": f"{stem}/metrics/baseline.parquet",
        "conditions": f"{stem}/metrics/conditions.parquet",
        "transfer": f"{stem}/metrics/transfer.parquet",
        "findings": f"{stem}/metrics/findings.parquet",
        "model_check": f"{stem}/model_check.json",
        "model": f"resources/models/{wildcards.model}",
        "prompts": expand("results/prompts/{domain}.parquet", domain=STUDY.domains),
    }


def appendix_config(wildcards):
    """What the appendix reports of the configuration this run used (a change re-renders it)."""
    keys = (
        "groups",
        "domains",
        "variations",
        "metrics",
        "activations",
        "scoring",
        "masks",
        "evaluate",
    )
    return {
        "model": wildcards.model,
        "readout": STUDY.readout(wildcards.model),
        "names": list(STUDY.names),
        "variation_counts": {key: len(STUDY.variations[key]) for key in STUDY.domains},
        "prefixes": {
            key: domain.answer.prefix for key, domain in STUDY.domains.items()
        },
        **{key: STUDY.config[key] for key in keys},
    }

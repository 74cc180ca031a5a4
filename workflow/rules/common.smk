# All Python the rules use: config validation (first), wildcard constraints, targets, and the functions that map
# a job's wildcards to its input paths; its params come from biasprune.jobs (job_params), its one owner.
import collections
import re
import sys
from pathlib import Path

# The library sits next to the rules (workflow/scripts), also where the workflow is used as a module.
sys.path.insert(0, str(Path(str(workflow.current_basedir)).parent / "scripts"))
# The captions of Snakemake's report and the appendix (workflow/report).
REPORT_DIR = Path(str(workflow.current_basedir)).parent / "report"

from biasprune.errors import ConfigError
from snakemake import __version__ as SNAKEMAKE_VERSION
from snakemake.exceptions import WorkflowError
from biasprune.jobs import Jobs
from biasprune.methods import UNITS, method_names
from biasprune.methods import method as registry_method
from biasprune.study import load_study
from biasprune.vocabulary import DOMAIN, scope_names

CONFIG_FILE = ", ".join(map(str, workflow.configfiles)) or "config"

try:
    STUDY = load_study(config, CONFIG_FILE)
except ConfigError as error:
    sys.exit("\n".join(f"biasprune: {line}" for line in str(error).splitlines()))
JOBS = Jobs(STUDY)

# The domain whose first prompt the model check answers.
FIRST_DOMAIN = STUDY.domains[STUDY.config["domains"][0]]


wildcard_constraints:
    domain="|".join(map(re.escape, STUDY.domains)),
    model="|".join(map(re.escape, STUDY.models)),
    unit="|".join(UNITS),
    method="|".join(method_names()),
    scope="|".join(scope_names()),


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
        # the models side by side, where there are several
        *(["reports/comparison.html"] if len(STUDY.models) > 1 else []),
    ]


def domain_inputs(wildcards):
    """The files a domain's prompt table is made from (so editing one reruns only that domain)."""
    domain = STUDY.domains[wildcards.domain]
    files = {"domain": domain.file, "names": STUDY.config["names"]["table"]}
    if domain.table is not None:
        files["table"] = domain.table.path
    return files


def job_params(name):
    """A rule's params: the projection `name` of biasprune.jobs.Jobs (the one owner of what a job depends
    on), called with the job's wildcards."""
    projection = getattr(JOBS, name)
    return lambda wildcards: projection(**dict(wildcards.items()))


def model_gpus(wildcards):
    return JOBS.gpus(wildcards.model)


def score_cache(wildcards):
    """The cache a unit's scores are read from: the residual cache for directions, else the activation cache."""
    folder = (
        "activations/residuals" if wildcards.unit == "directions" else "activations"
    )
    return f"results/{wildcards.model}/{folder}/{wildcards.domain}.parquet"


def mask_inputs(wildcards):
    """Scores of {unit}/{method} for every domain and the model (weights); for a method ranked against the
    bias, the unpruned answers and prompt labels whose SMD signs it reads (not the baseline table, which
    the bootstrap seed rewrites)."""
    inputs = {
        "scores": expand(
            "results/{model}/scores/{unit}/{method}/{domain}.parquet",
            **wildcards,
            domain=STUDY.domains,
        ),
        "model": f"resources/models/{wildcards.model}",
    }
    if registry_method(wildcards.unit, wildcards.method).ranking == "against_bias":
        inputs["answers"] = expand(
            "results/{model}/answers/base/{domain}.parquet",
            model=wildcards.model,
            domain=STUDY.domains,
        )
        inputs["prompts"] = expand(
            "results/prompts/{domain}.parquet", domain=STUDY.domains
        )
    return inputs


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
    if JOBS.evaluate(**dict(wildcards.items())).get("head_ablation") != "mean":
        del files["neutral"]
    return files


def condition_metrics_inputs(wildcards):
    """Every evaluation, damage table and manifest of {model}, with the unpruned answers and prompt labels."""
    sets = [(s["unit"], s["method"], s["scope"]) for s in JOBS.evaluated_sets()]
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


def placement_scope() -> str:
    """The scope whose masks show where components sit: each domain's common mask where configured."""
    scopes = STUDY.config["masks"]["scopes"]
    return DOMAIN if DOMAIN in scopes else scopes[0]


def placement_masks(model):
    """The mask files of `model` that show where components sit, one per unit and method."""
    return [
        f"results/{model}/masks/{unit}/{method}/{placement_scope()}.safetensors"
        for unit, method in STUDY.score_sets
    ]


def domain_mask_files(wildcards):
    return placement_masks(wildcards.model)


def domain_manifests(wildcards):
    return [
        path.replace(".safetensors", ".json") for path in domain_mask_files(wildcards)
    ]


def metric_table(name):
    """A figure's input: the metric table `name` of the job's model."""
    return lambda wildcards: {
        "table": f"results/{wildcards.model}/metrics/{name}.parquet"
    }


def placement_files(wildcards):
    """A figure's inputs: the masks that show where components sit, with their manifests."""
    return {
        "masks": domain_mask_files(wildcards),
        "manifests": domain_manifests(wildcards),
    }


# The figures the `figure` rule draws, in the appendix's order; per figure its inputs (a function of the job's wildcards)
# and where Snakemake's report files it (category, subcategory). Its caption, in the appendix and the report,
# is workflow/report/<figure>.rst; workflow/scripts/figure.py draws it.
Figure = collections.namedtuple("Figure", ["inputs", "category", "subcategory"])
FIGURES = {
    "baseline": Figure(metric_table("baseline"), "Baseline", "Baseline bias"),
    "before_after": Figure(
        metric_table("conditions"), "Pruning", "Before and after pruning"
    ),
    "transfer": Figure(metric_table("transfer"), "Pruning", "Transfer matrix"),
    "units": Figure(
        metric_table("conditions"), "Pruning", "Neurons and weights against heads"
    ),
    "tradeoff": Figure(metric_table("conditions"), "Pruning", "Bias against damage"),
    "components": Figure(placement_files, "Components", "Where the components sit"),
    "overlap": Figure(placement_files, "Components", "Overlap across domains"),
}


def figure_inputs(wildcards):
    return FIGURES[wildcards.figure].inputs(wildcards)


def figure_category(wildcards):
    return FIGURES[wildcards.figure].category


def figure_subcategory(wildcards):
    return FIGURES[wildcards.figure].subcategory


def figure_caption(wildcards):
    """The figure's caption text (workflow/report/<figure>.rst), for the report's caption template
    workflow/report/figure.rst: Snakemake reads one caption file per rule, the appendix one per figure.
    """
    return (REPORT_DIR / f"{wildcards.figure}.rst").read_text()


def appendix_inputs(wildcards):
    stem = f"results/{wildcards.model}"
    return {
        "figures": expand(
            f"reports/{wildcards.model}/figures/{{figure}}.png", figure=FIGURES
        ),
        "baseline": f"{stem}/metrics/baseline.parquet",
        "conditions": f"{stem}/metrics/conditions.parquet",
        "transfer": f"{stem}/metrics/transfer.parquet",
        "findings": f"{stem}/metrics/findings.parquet",
        "model_check": f"{stem}/model_check.json",
        "model": f"resources/models/{wildcards.model}",
        "prompts": expand("results/prompts/{domain}.parquet", domain=STUDY.domains),
    }


def comparison_inputs(wildcards):
    """Each model's baseline, transfer and findings tables, model check and placement manifests, in the
    order of `models` (manifests model-major: the script splits them evenly)."""
    models = STUDY.models
    return {
        **{
            name: [f"results/{model}/metrics/{name}.parquet" for model in models]
            for name in ("baseline", "transfer", "findings")
        },
        "model_check": [f"results/{model}/model_check.json" for model in models],
        "manifests": [
            path.replace(".safetensors", ".json")
            for model in models
            for path in placement_masks(model)
        ],
    }

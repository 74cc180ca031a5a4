# biasprune: where racial bias sits in a chat model, what pruning it does, and how far that carries.
# Entry point only: the stages live in workflow/rules/, the logic in workflow/scripts/biasprune/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/answers.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


ruleorder: greedy_scores > scores


rule all:
    default_target: True
    input:
        get_final_output(),

rule fetch_model:
    """Obtain a model from its registry entry (the only rule that touches the network)."""
    output:
        model=directory("resources/models/{model}"),
    params:
        spec=model_spec,
    log:
        "logs/fetch_model/{model}.log",
    benchmark:
        "benchmarks/fetch_model/{model}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/fetch_model.py"


rule model_check:
    """Load the model, describe its architecture and greedy-decode the first prompt of the first domain."""
    input:
        model="resources/models/{model}",
        prompts=f"results/prompts/{next(iter(STUDY.domains))}.parquet",
    output:
        check="results/{model}/model_check.json",
    params:
        spec=model_spec,
        prefix=STUDY.domains[next(iter(STUDY.domains))].answer.prefix,
    resources:
        gpu=model_gpus,
    log:
        "logs/model_check/{model}.log",
    benchmark:
        "benchmarks/model_check/{model}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/model_check.py"

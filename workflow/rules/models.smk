rule fetch_model:
    """Obtain a model from its registry entry (the only rule that touches the network)."""
    output:
        model=directory("resources/models/{model}"),
    log:
        "logs/fetch_model/{model}.log",
    benchmark:
        "benchmarks/fetch_model/{model}.tsv"
    conda:
        "../envs/model.yaml"
    threads: STUDY.config["threads"]
    params:
        source=job_params("model_source"),
    script:
        "../scripts/fetch_model.py"


rule model_check:
    """Load the model, describe its architecture and greedy-decode the first prompt of the first domain."""
    input:
        model="resources/models/{model}",
        prompts=f"results/prompts/{FIRST_DOMAIN.key}.parquet",
    output:
        check="results/{model}/model_check.json",
    log:
        "logs/model_check/{model}.log",
    benchmark:
        "benchmarks/model_check/{model}.tsv"
    conda:
        "../envs/model.yaml"
    threads: STUDY.config["threads"]
    resources:
        gpu=model_gpus,
    params:
        spec=job_params("model_runtime"),
        prefix=job_params("model_check_prefix"),
    script:
        "../scripts/model_check.py"

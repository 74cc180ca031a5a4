rule activations:
    """Cache, per prompt and reduced over tokens, what every scoring method needs (streamed per batch)."""
    input:
        model="resources/models/{model}",
        prompts="results/prompts/{domain}.parquet",
        answers="results/{model}/answers/base/{domain}.parquet",
    output:
        cache="results/{model}/activations/{domain}.parquet",
    log:
        "logs/activations/{model}/{domain}.log",
    benchmark:
        "benchmarks/activations/{model}/{domain}.tsv"
    conda:
        "../envs/model.yaml"
    threads: STUDY.config["threads"]
    resources:
        gpu=model_gpus,
        batch_size=JOBS.batch_size("activations"),
        attribution_batch_size=JOBS.batch_size("attribution"),
    params:
        model=job_params("model_runtime"),
        activations=job_params("activations"),
        answer=job_params("answer"),
        sequence_prefix=job_params("sequence_prefix"),
        attribution_readout=job_params("attribution_readout"),
    script:
        "../scripts/activations.py"


rule residuals:
    """Cache the residual stream of every layer at the last name token and the answer position (directions)."""
    input:
        model="resources/models/{model}",
        prompts="results/prompts/{domain}.parquet",
    output:
        cache="results/{model}/activations/residuals/{domain}.parquet",
    log:
        "logs/residuals/{model}/{domain}.log",
    benchmark:
        "benchmarks/residuals/{model}/{domain}.tsv"
    conda:
        "../envs/model.yaml"
    threads: STUDY.config["threads"]
    resources:
        gpu=model_gpus,
        batch_size=JOBS.batch_size("activations"),
    params:
        model=job_params("model_runtime"),
        sequence_prefix=job_params("sequence_prefix"),
    script:
        "../scripts/residuals.py"


rule scores:
    """Scores of one unit (weights, neurons, heads, directions) by one method for one domain, from the cache."""
    input:
        cache=score_cache,
        prompts="results/prompts/{domain}.parquet",
        answers="results/{model}/answers/base/{domain}.parquet",
    output:
        scores="results/{model}/scores/{unit}/{method}/{domain}.parquet",
    log:
        "logs/scores/{model}/{unit}/{method}/{domain}.log",
    benchmark:
        "benchmarks/scores/{model}/{unit}/{method}/{domain}.tsv"
    wildcard_constraints:
        method="|".join(method_names(rule="scores")),
    conda:
        "../envs/model.yaml"
    params:
        scoring=job_params("scoring"),
        groups=job_params("groups"),
        folds=job_params("folds"),
    script:
        "../scripts/scores.py"


rule greedy_scores:
    """The authors' greedy head order for one domain: one head per step, re-measured with the chosen ones zeroed."""
    input:
        model="resources/models/{model}",
        prompts="results/prompts/{domain}.parquet",
        answers="results/{model}/answers/base/{domain}.parquet",
    output:
        scores="results/{model}/scores/heads/greedy_attention/{domain}.parquet",
    log:
        "logs/scores/{model}/heads/greedy_attention/{domain}.log",
    benchmark:
        "benchmarks/scores/{model}/heads/greedy_attention/{domain}.tsv"
    conda:
        "../envs/model.yaml"
    threads: STUDY.config["threads"]
    resources:
        gpu=model_gpus,
        batch_size=JOBS.batch_size("greedy_scores"),
    params:
        model=job_params("model_runtime"),
        heads=job_params("greedy"),
        groups=job_params("groups"),
        folds=job_params("folds"),
        answer=job_params("answer"),
        sequence_prefix=job_params("sequence_prefix"),
    script:
        "../scripts/greedy_scores.py"

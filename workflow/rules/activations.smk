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
    resources:
        gpu=model_gpus,
    params:
        model=model_runtime,
        activations=STUDY.config["activations"],
        answer=answer_spec,
        sequence_prefix=sequence_prefix,
        attribution_readout=attribution_readout,
    script:
        "../scripts/activations.py"


rule scores:
    """Scores of one unit (weights, neurons, heads) by one method for one domain, from the cache."""
    input:
        cache="results/{model}/activations/{domain}.parquet",
        prompts="results/prompts/{domain}.parquet",
        answers="results/{model}/answers/base/{domain}.parquet",
    output:
        scores="results/{model}/scores/{unit}/{method}/{domain}.parquet",
    log:
        "logs/scores/{model}/{unit}/{method}/{domain}.log",
    benchmark:
        "benchmarks/scores/{model}/{unit}/{method}/{domain}.tsv"
    conda:
        "../envs/model.yaml"
    params:
        scoring=scoring_params,
        groups=STUDY.groups,
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
    resources:
        gpu=model_gpus,
    params:
        model=model_runtime,
        heads=greedy_params,
        groups=STUDY.groups,
        answer=answer_spec,
        sequence_prefix=sequence_prefix,
        batch_size=STUDY.config["activations"]["batch_size"],
    script:
        "../scripts/greedy_scores.py"

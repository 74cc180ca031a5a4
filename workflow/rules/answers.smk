rule answers:
    """The unpruned model's answers to every prompt of a domain, read with the model's readout."""
    input:
        model="resources/models/{model}",
        prompts="results/prompts/{domain}.parquet",
    output:
        answers="results/{model}/answers/base/{domain}.parquet",
    log:
        "logs/answers/{model}/base/{domain}.log",
    benchmark:
        "benchmarks/answers/{model}/base/{domain}.tsv"
    conda:
        "../envs/model.yaml"
    resources:
        gpu=model_gpus,
    params:
        model=model_runtime,
        readout=readout_params,
        answer=answer_spec,
    script:
        "../scripts/answers.py"

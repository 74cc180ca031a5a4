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
    threads: STUDY.config["threads"]
    resources:
        gpu=model_gpus,
        batch_size=JOBS.batch_size("answers"),
    params:
        model=job_params("model_runtime"),
        readout=job_params("readout"),
        answer=job_params("answer"),
    script:
        "../scripts/answers.py"

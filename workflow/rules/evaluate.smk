rule evaluate:
    """One domain's prompts read under every mask of one scope evaluated there (and its random controls)."""
    input:
        unpack(evaluate_inputs),
    output:
        answers="results/{model}/eval/{unit}/{method}/{scope}/{domain}.parquet",
    log:
        "logs/evaluate/{model}/{unit}/{method}/{scope}/{domain}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{unit}/{method}/{scope}/{domain}.tsv"
    conda:
        "../envs/model.yaml"
    # Many small jobs: one thread each, so that as many run at once as there are cores (a cluster profile's
    # set-threads raises it).
    threads: 1
    resources:
        gpu=model_gpus,
        batch_size=JOBS.batch_size("evaluate"),
    params:
        model=job_params("model_runtime"),
        readout=job_params("readout"),
        answer=job_params("answer"),
        evaluate=job_params("evaluate"),
    script:
        "../scripts/evaluate.py"


rule damage:
    """Collateral damage of every mask of one scope: KL(base || pruned) on the name-free neutral prompts."""
    input:
        unpack(damage_inputs),
    output:
        table="results/{model}/damage/{unit}/{method}/{scope}.parquet",
    log:
        "logs/damage/{model}/{unit}/{method}/{scope}.log",
    benchmark:
        "benchmarks/damage/{model}/{unit}/{method}/{scope}.tsv"
    conda:
        "../envs/model.yaml"
    threads: 1  # as evaluate
    resources:
        gpu=model_gpus,
    params:
        model=job_params("model_runtime"),
        evaluate=job_params("evaluate"),
    script:
        "../scripts/damage.py"


rule condition_metrics:
    """Every condition's bias, reduction, damage and random controls; the selection x evaluation transfer matrix."""
    input:
        unpack(condition_metrics_inputs),
    output:
        conditions="results/{model}/metrics/conditions.parquet",
        transfer="results/{model}/metrics/transfer.parquet",
        names="results/{model}/metrics/names.parquet",
    log:
        "logs/condition_metrics/{model}.log",
    benchmark:
        "benchmarks/condition_metrics/{model}.tsv"
    conda:
        "../envs/tables.yaml"
    params:
        sets=job_params("evaluated_sets"),
        groups=job_params("groups"),
        metrics=job_params("metrics"),
    script:
        "../scripts/condition_metrics.py"

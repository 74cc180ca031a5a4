rule baseline_metrics:
    """The baseline bias audit: SMD with bootstrap CI, Mann-Whitney p and invalid rates per variation and domain."""
    input:
        answers=expand(
            "results/{{model}}/answers/base/{domain}.parquet", domain=STUDY.domains
        ),
        prompts=expand("results/prompts/{domain}.parquet", domain=STUDY.domains),
    output:
        table="results/{model}/metrics/baseline.parquet",
    log:
        "logs/baseline_metrics/{model}.log",
    benchmark:
        "benchmarks/baseline_metrics/{model}.tsv"
    conda:
        "../envs/tables.yaml"
    params:
        groups=job_params("groups"),
        metrics=job_params("metrics"),
    script:
        "../scripts/baseline_metrics.py"

rule prompts:
    """One row per (variation, name) of a domain: rendered message, labels and the name's spans."""
    input:
        unpack(domain_inputs),
    output:
        table="results/prompts/{domain}.parquet",
    log:
        "logs/prompts/{domain}.log",
    benchmark:
        "benchmarks/prompts/{domain}.tsv"
    conda:
        "../envs/tables.yaml"
    params:
        spec=job_params("domain"),
    script:
        "../scripts/prompts.py"


rule neutral_prompts:
    """Name-free prompts for damage measurement."""
    input:
        neutral=STUDY.config["prompts"]["neutral"],
        names=STUDY.config["names"]["table"],
    output:
        table="results/prompts/neutral.parquet",
    log:
        "logs/neutral_prompts/neutral.log",
    benchmark:
        "benchmarks/neutral_prompts/neutral.tsv"
    conda:
        "../envs/tables.yaml"
    params:
        names=job_params("neutral_names"),
        groups=job_params("groups"),
    script:
        "../scripts/neutral_prompts.py"

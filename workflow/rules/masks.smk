rule masks:
    """Every condition of one scope for one unit and method: packed masks and a JSON manifest."""
    input:
        unpack(mask_inputs),
    output:
        masks="results/{model}/masks/{unit}/{method}/{scope}.safetensors",
        manifest="results/{model}/masks/{unit}/{method}/{scope}.json",
    log:
        "logs/masks/{model}/{unit}/{method}/{scope}.log",
    benchmark:
        "benchmarks/masks/{model}/{unit}/{method}/{scope}.tsv"
    conda:
        "../envs/model.yaml"
    params:
        parameters=job_params("masks"),
        groups=job_params("groups"),
        model=job_params("model_runtime"),
        signs=job_params("mask_signs"),
        folds=job_params("folds"),
    script:
        "../scripts/masks.py"


rule export_pruned:
    """A pruned model (weights edited, saved with its tokenizer) for the mask chosen in config `export`."""
    input:
        unpack(export_inputs),
    output:
        model=directory("results/{model}/pruned"),
    log:
        "logs/export_pruned/{model}.log",
    benchmark:
        "benchmarks/export_pruned/{model}.tsv"
    conda:
        "../envs/model.yaml"
    threads: STUDY.config["threads"]
    params:
        export=job_params("export"),
    script:
        "../scripts/export_pruned.py"

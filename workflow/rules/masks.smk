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
        parameters=mask_params,
        groups=STUDY.groups,
        model=model_runtime,
    script:
        "../scripts/masks.py"

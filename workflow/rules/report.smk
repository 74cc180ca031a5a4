rule figure_baseline:
    """Figure: baseline bias."""
    input:
        table="results/{model}/metrics/baseline.parquet",
    output:
        png=report(
            "reports/{model}/figures/baseline.png",
            caption="../report/baseline.rst",
            category="Baseline",
            subcategory="Baseline bias",
            labels={"figure": "baseline", "format": "png"},
        ),
        svg="reports/{model}/figures/baseline.svg",
    log:
        "logs/figure_baseline/{model}.log",
    benchmark:
        "benchmarks/figure_baseline/{model}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/figure.py"


rule figure_before_after:
    """Figure: before and after pruning."""
    input:
        table="results/{model}/metrics/conditions.parquet",
    output:
        png=report(
            "reports/{model}/figures/before_after.png",
            caption="../report/before_after.rst",
            category="Pruning",
            subcategory="Before and after pruning",
            labels={"figure": "before_after", "format": "png"},
        ),
        svg="reports/{model}/figures/before_after.svg",
    log:
        "logs/figure_before_after/{model}.log",
    benchmark:
        "benchmarks/figure_before_after/{model}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/figure.py"


rule figure_transfer:
    """Figure: transfer matrix."""
    input:
        table="results/{model}/metrics/transfer.parquet",
    output:
        png=report(
            "reports/{model}/figures/transfer.png",
            caption="../report/transfer.rst",
            category="Pruning",
            subcategory="Transfer matrix",
            labels={"figure": "transfer", "format": "png"},
        ),
        svg="reports/{model}/figures/transfer.svg",
    log:
        "logs/figure_transfer/{model}.log",
    benchmark:
        "benchmarks/figure_transfer/{model}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/figure.py"


rule figure_tradeoff:
    """Figure: bias against damage."""
    input:
        table="results/{model}/metrics/conditions.parquet",
    output:
        png=report(
            "reports/{model}/figures/tradeoff.png",
            caption="../report/tradeoff.rst",
            category="Pruning",
            subcategory="Bias against damage",
            labels={"figure": "tradeoff", "format": "png"},
        ),
        svg="reports/{model}/figures/tradeoff.svg",
    log:
        "logs/figure_tradeoff/{model}.log",
    benchmark:
        "benchmarks/figure_tradeoff/{model}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/figure.py"


rule figure_components:
    """Figure: where the components sit."""
    input:
        masks=domain_mask_files,
        manifests=domain_manifests,
    output:
        png=report(
            "reports/{model}/figures/components.png",
            caption="../report/components.rst",
            category="Components",
            subcategory="Where the components sit",
            labels={"figure": "components", "format": "png"},
        ),
        svg="reports/{model}/figures/components.svg",
    log:
        "logs/figure_components/{model}.log",
    benchmark:
        "benchmarks/figure_components/{model}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/figure.py"


rule figure_overlap:
    """Figure: overlap across domains."""
    input:
        masks=domain_mask_files,
        manifests=domain_manifests,
    output:
        png=report(
            "reports/{model}/figures/overlap.png",
            caption="../report/overlap.rst",
            category="Components",
            subcategory="Overlap across domains",
            labels={"figure": "overlap", "format": "png"},
        ),
        svg="reports/{model}/figures/overlap.svg",
    log:
        "logs/figure_overlap/{model}.log",
    benchmark:
        "benchmarks/figure_overlap/{model}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/figure.py"


rule figure_units:
    """Figure: neurons and weights against heads."""
    input:
        table="results/{model}/metrics/conditions.parquet",
    output:
        png=report(
            "reports/{model}/figures/units.png",
            caption="../report/units.rst",
            category="Pruning",
            subcategory="Neurons and weights against heads",
            labels={"figure": "units", "format": "png"},
        ),
        svg="reports/{model}/figures/units.svg",
    log:
        "logs/figure_units/{model}.log",
    benchmark:
        "benchmarks/figure_units/{model}.tsv"
    conda:
        "../envs/model.yaml"
    script:
        "../scripts/figure.py"


rule findings:
    """The study's claims checked on this run's tables (verdicts and the numbers behind them)."""
    input:
        conditions="results/{model}/metrics/conditions.parquet",
        names="results/{model}/metrics/names.parquet",
    output:
        table="results/{model}/metrics/findings.parquet",
    log:
        "logs/findings/{model}.log",
    benchmark:
        "benchmarks/findings/{model}.tsv"
    conda:
        "../envs/tables.yaml"
    params:
        groups=job_params("groups"),
        metrics=job_params("metrics"),
    script:
        "../scripts/findings.py"


rule tables:
    """The metric tables as CSV for the paper's authors."""
    input:
        baseline="results/{model}/metrics/baseline.parquet",
        conditions="results/{model}/metrics/conditions.parquet",
        transfer="results/{model}/metrics/transfer.parquet",
        findings="results/{model}/metrics/findings.parquet",
    output:
        baseline=report(
            "reports/{model}/tables/baseline.csv",
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "baseline"},
        ),
        conditions=report(
            "reports/{model}/tables/conditions.csv",
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "conditions"},
        ),
        transfer=report(
            "reports/{model}/tables/transfer.csv",
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "transfer"},
        ),
        findings=report(
            "reports/{model}/tables/findings.csv",
            caption="../report/findings.rst",
            category="Tables",
            labels={"table": "findings"},
        ),
    log:
        "logs/tables/{model}.log",
    benchmark:
        "benchmarks/tables/{model}.tsv"
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/tables.py"


rule appendix:
    """The standalone HTML appendix: setup, figures, tables, findings, limitations, provenance."""
    input:
        unpack(appendix_inputs),
    output:
        html=report(
            "reports/{model}/appendix.html",
            caption="../report/appendix.rst",
            category="Appendix",
            labels={"document": "appendix"},
        ),
    log:
        "logs/appendix/{model}.log",
    benchmark:
        "benchmarks/appendix/{model}.tsv"
    conda:
        "../envs/model.yaml"
    params:
        config=job_params("appendix"),
        figures=FIGURES,
        snakemake_version=SNAKEMAKE_VERSION,
    script:
        "../scripts/appendix.py"


rule comparison:
    """The study's models side by side: tables, figures on one scale and a standalone HTML page."""
    input:
        unpack(comparison_inputs),
    output:
        html=report(
            "reports/comparison.html",
            caption="../report/comparison.rst",
            category="Comparison",
            subcategory="Page",
            labels={"document": "comparison"},
        ),
        baseline=report(
            "reports/comparison/baseline.csv",
            caption="../report/comparison_tables.rst",
            category="Comparison",
            subcategory="Tables",
            labels={"table": "baseline"},
        ),
        findings=report(
            "reports/comparison/findings.csv",
            caption="../report/comparison_tables.rst",
            category="Comparison",
            subcategory="Tables",
            labels={"table": "findings"},
        ),
        transfer=report(
            "reports/comparison/transfer.csv",
            caption="../report/comparison_tables.rst",
            category="Comparison",
            subcategory="Tables",
            labels={"table": "transfer"},
        ),
        placement=report(
            "reports/comparison/placement.csv",
            caption="../report/comparison_tables.rst",
            category="Comparison",
            subcategory="Tables",
            labels={"table": "placement"},
        ),
        baseline_png=report(
            "reports/comparison/figures/baseline.png",
            caption="../report/comparison_baseline.rst",
            category="Comparison",
            subcategory="Figures",
            labels={"figure": "baseline", "format": "png"},
        ),
        baseline_svg="reports/comparison/figures/baseline.svg",
        transfer_png=report(
            "reports/comparison/figures/transfer.png",
            caption="../report/comparison_transfer.rst",
            category="Comparison",
            subcategory="Figures",
            labels={"figure": "transfer", "format": "png"},
        ),
        transfer_svg="reports/comparison/figures/transfer.svg",
        placement_png=report(
            "reports/comparison/figures/placement.png",
            caption="../report/comparison_placement.rst",
            category="Comparison",
            subcategory="Figures",
            labels={"figure": "placement", "format": "png"},
        ),
        placement_svg="reports/comparison/figures/placement.svg",
    log:
        "logs/comparison.log",
    benchmark:
        "benchmarks/comparison.tsv"
    conda:
        "../envs/model.yaml"
    params:
        comparison=job_params("comparison"),
        snakemake_version=SNAKEMAKE_VERSION,
    script:
        "../scripts/comparison.py"

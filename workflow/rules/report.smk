rule figure:
    """A figure of the appendix (common.smk FIGURES: its inputs, report category and subcategory)."""
    input:
        unpack(figure_inputs),
    output:
        png=report(
            "reports/{model}/figures/{figure}.png",
            caption="../report/figure.rst",
            category=figure_category,
            subcategory=figure_subcategory,
            labels={"figure": "{figure}", "format": "png"},
        ),
        svg="reports/{model}/figures/{figure}.svg",
    log:
        "logs/figure/{model}/{figure}.log",
    benchmark:
        "benchmarks/figure/{model}/{figure}.tsv"
    wildcard_constraints:
        figure="|".join(FIGURES),
    conda:
        "../envs/model.yaml"
    params:
        # read by the report's caption (report/figure.rst), not by the script
        caption=figure_caption,
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
        figures=list(FIGURES),
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

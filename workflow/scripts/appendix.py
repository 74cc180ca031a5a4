"""Rule `appendix`: the standalone HTML appendix of one model's run."""

import json
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from biasprune.appendix import THRESHOLDS, caption, embed, findings_rows, html_table, render, settings_rows
from biasprune.io import atomic_path, config_hash, sha256_file
from biasprune.logs import log_to
from biasprune.study import READOUT_ESTIMANDS

REPORT = Path(snakemake.scriptdir).parent / "report"

with log_to(snakemake.log[0]):
    config = snakemake.params.config
    check = json.loads(Path(snakemake.input.model_check).read_text())
    source = json.loads((Path(snakemake.input.model) / "biasprune-source.json").read_text())
    examples = []
    for path in snakemake.input.prompts:
        table = pq.read_table(path).to_pylist()
        domain = table[0]["domain"]
        examples.append(
            {
                "domain": domain,
                "variations": list(dict.fromkeys(row["variation"] for row in table)),
                "text": table[0]["text"],
                "prefix": config["prefixes"][domain],
            }
        )
    figures = []
    for name, png in zip(snakemake.params.figures, snakemake.input.figures, strict=True):
        title, text = caption(REPORT / f"{name}.rst")
        figures.append({"name": name, "title": title, "caption": text, "data": embed(png)})
    baseline = pd.read_parquet(snakemake.input.baseline)
    transfer = pd.read_parquet(snakemake.input.transfer)
    conditions = pd.read_parquet(snakemake.input.conditions)
    tables = [
        html_table(
            "baseline",
            "Baseline bias",
            "Per variation and domain: group means, SMD with 95% CI, Mann-Whitney p, invalid rates.",
            baseline,
            [
                "domain",
                "variation",
                "level",
                "mean_ref",
                "mean_focal",
                "smd",
                "smd_low",
                "smd_high",
                "measurable",
                "abs_smd",
                "abs_smd_p",
                "mwu_p",
                "invalid_rate_ref",
                "invalid_rate_focal",
            ],
        ),
        html_table(
            "transfer",
            "Transfer matrix",
            "Per selection and evaluated domain: signed SMD with its 95% CI, relative reduction of |SMD| with its paired CI, the absolute change of |SMD|, and each control's mean reduction (empty masks are marked, their numbers left blank).",
            transfer,
            [
                "unit",
                "method",
                "setting",
                "selection",
                "evaluated",
                "in_sample",
                "vacuous",
                "n_pruned",
                "share_pruned",
                "base_smd",
                "smd",
                "smd_low",
                "smd_high",
                "abs_change",
                "reduction",
                "reduction_low",
                "reduction_high",
                "random_reduction_mean",
                "matched_reduction_mean",
                "generic_reduction_mean",
                "kl",
                "invalid_rate",
            ],
        ),
    ]
    provenance = {
        "run_date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "config_hash": config_hash(config),
        "model_source": json.dumps(
            {
                k: v
                for k, v in source.items()
                if "sha" in k or k in ("source", "repo", "revision", "package", "version")
            },
            sort_keys=True,
        ),
        **{f"prompts/{Path(p).name}": sha256_file(p) for p in snakemake.input.prompts},
        # Model libraries as the model jobs saw them; table and plotting libraries of this job's env.
        **{f"version/{name}": number for name, number in check["versions"].items()},
        **{
            f"version/{name}": version(name)
            for name in ("pandas", "numpy", "matplotlib", "seaborn", "jinja2")
        },
        "version/snakemake": snakemake.params.snakemake_version,
    }
    vacuous = int(
        (
            conditions["vacuous"] & (conditions["control"] == "pruned") & (conditions["level"] == "domain")
        ).sum()
    )
    limitations = [
        f"{len(config['names'])} names ({len(config['names']) // 2} per group); each name's answers are one unit of the bootstrap, so intervals are wide when few names are used.",
        f"Readout `{config['readout']['mode']}` estimates {READOUT_ESTIMANDS[config['readout']['mode']]}",
        f"{vacuous} evaluated masks prune nothing (empty intersections across variations or domains): they are marked empty, their numbers left blank, and they are left out of every verdict.",
        "Relative reductions of one cell are unstable where the unpruned |SMD| is near zero; the verdicts pool them as ratios of sums over variations with a measurable gap only.",
        f"Head masks at the loo, domain and cross scopes use the `{config['masks']['heads'].get('common', 'frequency')}` rule, weight masks the `{config['masks']['weights'].get('common', 'intersection')}` rule (the paper: intersection for weights, the most frequent heads).",
    ]
    # How this run differs from the paper's design (the README's "Where this differs from the paper").
    readout = config["readout"]
    prefixed = readout["mode"] == "expected" or readout.get("use_prefix", False)
    differences = [
        f"readout `{readout['mode']}`"
        + ("" if readout["mode"] == "sample" else " (the paper sampled 100 answers)"),
        "the answer prefix pre-filled in the assistant turn (the paper had none)" if prefixed else "",
        "the chat template's default system line (SmolLM2 adds one; Llama-3's had none)"
        if "smollm2" in config["model"]
        else "",
        f"{len(config['names'])} names (the paper's harness: 64)" if len(config["names"]) != 64 else "",
        f"{sum(config['variation_counts'].values())} variations in {len(config['variation_counts'])} domains "
        "(the paper: purchase with 18 items, and three further contexts)",
    ]
    limitations.insert(
        0, "Differences from the paper's design: " + "; ".join(filter(None, differences)) + "."
    )
    if check.get("n_layers", 0) < 32 or "smollm2" in config["model"]:
        limitations.insert(
            0,
            f"{config['model']} is a small stand-in ({check['n_layers']} layers, {check['d_mlp']} MLP units) for the paper's Llama-3-8B-Instruct: it shows whether the method and its controls behave, not whether the paper's numbers hold for the 8B model; answers cluster near the middle of the candidate grid and its gaps are small.",
        )
    html = render(
        {
            "model": {"key": config["model"], **check},
            "readout": config["readout"],
            "estimand": READOUT_ESTIMANDS[config["readout"]["mode"]],
            "groups": config["groups"],
            "metrics": config["metrics"],
            "names": config["names"],
            "examples": examples,
            "methods": settings_rows(
                {key: config[key] for key in ("scoring", "masks", "evaluate", "activations", "metrics")}
            ),
            "figures": figures,
            "tables": tables,
            "findings": findings_rows(pd.read_parquet(snakemake.input.findings)),
            "thresholds": THRESHOLDS,
            "limitations": limitations,
            "provenance": provenance,
        }
    )
    with atomic_path(snakemake.output.html) as tmp:
        tmp.write_text(html)
    print(f"appendix: {len(html) / 1e6:.1f} MB, {len(figures)} figures")

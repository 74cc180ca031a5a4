"""The study's claims checked on this run: every verdict and number is computed from the metric tables.

Claims (study-facts, from the paper's abstract):
1. Pruning reduces the Black/White disparity without a large rise in anomalous outputs.
2. Neuron-level pruning (MLP weights or units) reduces bias more than pruning attention heads.
3. Effectiveness falls as the strategy is made more general: variation > held-out variation > other context.
4. Bias is partly general (transfer beats random controls) and partly context-specific (transfer falls short
   of the in-context effect).
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd

from .figures import levels_table

# What "without a large rise in anomalous outputs" is taken to mean (claim 1), stated in the appendix.
MAX_INVALID_RISE = 0.05  # invalid-answer rate up by at most 5 points
MIN_INLIER_RATIO = 0.90  # at least 90% of answers inside the unpruned 5-95% band
HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "inconclusive"
CLAIMS = {
    1: "Pruning reduces the Black/White disparity without a large rise in anomalous outputs.",
    2: "Neuron-level pruning (MLP weights or units) reduces bias more than pruning attention heads.",
    3: "Effectiveness falls as the strategy is made more general: variation > held-out variation > other context.",
    4: "Bias is partly general (transfer beats random controls) and partly context-specific (it falls short "
    "of the in-context effect).",
}


def _ci(frame: pd.DataFrame) -> str:
    """Mean reduction over rows, with the mean of their 95% CI bounds."""
    return (
        f"{frame['reduction'].mean():+.2f} "
        f"[{frame['reduction_low'].mean():+.2f}, {frame['reduction_high'].mean():+.2f}]"
    )


def _increasing(values: list[float]) -> str:
    """HOLDS if the values rise strictly, FAILS if not, UNKNOWN when one is missing."""
    if not np.isfinite(values).all():
        return UNKNOWN
    return HOLDS if all(a < b for a, b in pairwise(values)) else FAILS


def _mean(frame: pd.DataFrame, level: str, column: str = "reduction") -> float:
    values = frame.loc[frame["generalisation"] == level, column]
    return float(values.mean()) if len(values) else np.nan


def claim_pruning_works(rows: pd.DataFrame) -> list[dict]:
    out = []
    for units, part in rows[rows["generalisation"] == "domain (in-sample)"].groupby("units"):
        part = part.dropna(subset=["reduction"])
        if part.empty:
            out.append({"claim": 1, "units": units, "verdict": UNKNOWN, "evidence": "no defined SMD"})
            continue
        significant = int((part["reduction_low"] > 0).sum())
        rise = float((part["invalid_rate"] - part["base_invalid_rate"]).max())
        inliers = float(part["inlier_ratio"].min())
        holds = significant > 0 and rise <= MAX_INVALID_RISE and inliers >= MIN_INLIER_RATIO
        out.append(
            {
                "claim": 1,
                "units": units,
                "verdict": HOLDS if holds else FAILS,
                "evidence": (
                    f"in-sample reduction over {len(part)} domains {_ci(part)}; CI above zero in {significant}; "
                    f"largest rise of the invalid rate {rise:+.3f} (allowed {MAX_INVALID_RISE}); "
                    f"lowest inlier ratio {inliers:.2f} (required {MIN_INLIER_RATIO})"
                ),
            }
        )
    return out


def claim_neurons_beat_heads(rows: pd.DataFrame) -> list[dict]:
    in_sample = rows[rows["generalisation"] == "domain (in-sample)"]
    neuron = in_sample[in_sample["unit"].isin(["weights", "neurons"])]
    heads = in_sample[in_sample["unit"] == "heads"]
    if neuron.empty or heads.empty:
        return [
            {
                "claim": 2,
                "units": "all",
                "verdict": UNKNOWN,
                "evidence": "needs both neuron-level and head masks",
            }
        ]
    best = {
        side: part.groupby("units")["reduction"].mean().sort_values().index[-1]
        for side, part in (("neuron", neuron), ("heads", heads))
    }
    a, b = in_sample[in_sample["units"] == best["neuron"]], in_sample[in_sample["units"] == best["heads"]]
    paired = a.set_index("domain")["reduction"].sub(b.set_index("domain")["reduction"]).dropna()
    holds = a["reduction"].mean() > b["reduction"].mean() and (paired > 0).mean() > 0.5
    return [
        {
            "claim": 2,
            "units": f"{best['neuron']} vs {best['heads']}",
            "verdict": HOLDS if holds else FAILS,
            "evidence": (
                f"best neuron-level method {best['neuron']} {_ci(a)} vs best head method {best['heads']} "
                f"{_ci(b)} (mean in-sample reduction over domains [mean CI]); ahead in "
                f"{int((paired > 0).sum())} of {len(paired)} domains"
            ),
        }
    ]


def claim_generality(rows: pd.DataFrame) -> list[dict]:
    out = []
    for units, part in rows.groupby("units"):
        within = _mean(part, "variation")
        held_out = _mean(part, "leave-one-out")
        transfers = [_mean(part, "domain (transfer)"), _mean(part, "cross (held out)")]
        other = (
            float(np.mean([x for x in transfers if np.isfinite(x)]))
            if np.isfinite(transfers).any()
            else np.nan
        )
        verdict = _increasing([other, held_out, within])
        out.append(
            {
                "claim": 3,
                "units": units,
                "verdict": verdict,
                "evidence": (
                    f"mean reduction: variation {within:+.2f}, held-out variation {held_out:+.2f}, "
                    f"other context {other:+.2f}"
                ),
            }
        )
    return out


def claim_partly_general(rows: pd.DataFrame) -> list[dict]:
    out = []
    for units, part in rows.groupby("units"):
        transfer = part[part["generalisation"].isin(["domain (transfer)", "cross (held out)"])]
        in_context = _mean(part, "domain (in-sample)")
        moved, random = transfer["reduction"].mean(), transfer["random_reduction_mean"].mean()
        verdict = _increasing([random, moved, in_context])
        out.append(
            {
                "claim": 4,
                "units": units,
                "verdict": verdict,
                "evidence": (
                    f"transfer {moved:+.2f} vs its random controls {random:+.2f} vs in-context {in_context:+.2f} "
                    f"(mean reductions over {len(transfer)} transfer cells)"
                ),
            }
        )
    return out


def findings(conditions: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, unit/method or comparison): statement, verdict and the numbers behind it."""
    rows = levels_table(conditions)
    table = pd.DataFrame(
        claim_pruning_works(rows)
        + claim_neurons_beat_heads(rows)
        + claim_generality(rows)
        + claim_partly_general(rows)
    )
    table.insert(1, "statement", table["claim"].map(CLAIMS))
    return table

"""The scoring methods, one registry: the config schema's choices (`scoring.<unit>.methods`, `export.method`),
the rules' `unit` and `method` wildcard constraints, which rule writes a method's scores, the parameters a
method's scores depend on and how masks rank units from them are all read from METHODS.

Adding a method (CONTRIBUTING.md): an entry here, its scoring function in scores.py (`SCORERS`), and its
config documentation (config/config.yaml and config/README.md)."""

from __future__ import annotations

from dataclasses import dataclass

UNITS = ("weights", "neurons", "heads", "directions")


@dataclass(frozen=True)
class Method:
    """One scoring method of one unit."""

    unit: str
    name: str
    # Keys of config `scoring.<unit>` the method reads (a change reruns its scores only).
    parameters: tuple[str, ...] = ()
    # The score statistic masks rank units by; None: the configured `masks.<unit>.statistic`.
    statistic: str | None = None
    # How the statistic becomes "prune first": "" as is, "abs" its magnitude, "against_bias" the predicted
    # reduction of |SMD| (the effect times minus the sign of the variation's baseline SMD).
    ranking: str = ""
    # The rule that writes its scores: `scores` (from the activation cache) or `greedy_scores` (runs the model).
    rule: str = "scores"
    # The group-blind statistic of the generic control of unit masks (None: the method has none): a per-group
    # statistic whose mean over both groups ranks units by magnitude, or one already pooled over groups.
    blind: str | None = None
    blind_pooled: bool = False


METHODS = (
    Method("weights", "wanda"),
    Method("neurons", "activation", parameters=("position",), statistic="diff", ranking="abs", blind="mean"),
    Method("neurons", "attribution", statistic="smd_effect", ranking="against_bias", blind="effect_mean"),
    # Ranked by the configured statistic's magnitude: `diff` by |diff|, `sum` (non-negative) as is.
    # Its generic control: the paper's pooled attention mass `sum`.
    Method(
        "heads", "name_attention", parameters=("aggregate",), ranking="abs", blind="sum", blind_pooled=True
    ),
    Method("heads", "attribution", statistic="smd_effect", ranking="against_bias", blind="effect_mean"),
    Method("heads", "greedy_attention", statistic="greedy_rank", rule="greedy_scores"),
    # Directions are fitted, not ranked, when masks are built (biasprune/directions.py); their scores are the
    # selection prompts' residuals at the configured position.
    Method("directions", "mean_difference", parameters=("position",)),
    Method("directions", "leace", parameters=("position",)),
)
# Units a pruned checkpoint can be written for (`export`): a direction edit is not a weight edit.
EXPORTABLE_UNITS = ("weights", "neurons", "heads")


def method(unit: str, name: str) -> Method:
    """The registry entry of `unit`/`name` (ValueError if there is none)."""
    for entry in METHODS:
        if (entry.unit, entry.name) == (unit, name):
            return entry
    raise ValueError(f"no method {name!r} for unit {unit!r}")


def method_names(unit: str | None = None, rule: str | None = None) -> list[str]:
    """Names of the methods (of one unit, written by one rule), each once, in registry order."""
    chosen = [m.name for m in METHODS if unit in (None, m.unit) and rule in (None, m.rule)]
    return list(dict.fromkeys(chosen))

"""The study's vocabulary: the names of conditions and settings, scopes, controls and generalisation levels.

Every other module builds and reads these names through this one; it imports nothing.

Conditions (what a mask is selected on; their names key the mask files and the result tables):
- scope `variation`: `{d}/{v}`, selected on variation v of domain d;
- scope `loo`: `{d}/-{v}`, selected on d's other variations, v held out;
- scope `domain`: `{d}`, selected on every variation of d;
- scope `cross`: `-{d}`, selected on every variation of every other domain;
- pooled (result tables only): `{d}/*` (each variation of d under its own `variation` mask) and `{d}/-*`
  (each under its `loo` mask).
A name alone is ambiguous for a variation that starts with `-` or is `*`: read a name with its scope where it
is known (`Condition.parse(name, scope)`).

Settings (the masks a condition holds, one per setting): `tau={a},{b};select={focal|reference}` (weights: top-a
of the selected group's Wanda score minus top-b of the other's), `fraction={f}` (neurons: a share of all MLP
units), `share={s}` (heads: a share of all query heads), `k={n}` (neurons or heads: a count), `layers={all|n}`
(directions: every residual layer, or the n that separate the groups best).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# -- scopes -------------------------------------------------------------------------------------------------
VARIATION, LOO, DOMAIN, CROSS = SCOPES = ("variation", "loo", "domain", "cross")
# Scopes whose conditions belong to one variation of a domain (pooled per domain in the result tables).
WITHIN = (VARIATION, LOO)
POOLED = "*"

# -- controls (the `control` column of evaluations and tables) ---------------------------------------------
PRUNED, RANDOM, MATCHED, GENERIC = "pruned", "random", "matched", "generic"
CONTROLS = (RANDOM, MATCHED, GENERIC)
BASE = "base"  # the unpruned answers (per-name summaries)

# -- the activation cache (written by activations, read by scores) ----------------------------------------
# Sites whose per-prompt input norms the Wanda scores read (TransformerLens names, `blocks.{layer}.` dropped).
WANDA_SITES = ("ln1.hook_normalized", "attn.hook_z", "ln2.hook_normalized", "mlp.hook_post")
RESIDUAL_SITE = "resid"
RESIDUAL_REDUCTIONS = {"name": "last_name", "answer": "answer"}  # config position -> cache reduction

# -- settings -----------------------------------------------------------------------------------------------
TAU, FRACTION, SHARE, K, LAYERS = "tau", "fraction", "share", "k", "layers"
SETTING_KINDS = (TAU, FRACTION, SHARE, K, LAYERS)
ALL = "all"  # the value of `layers=all`
# The config key of each unit's share of units (`masks.<unit>.<key>`); weights have tau pairs instead.
SHARE_KEYS = {"neurons": FRACTION, "heads": SHARE}

# -- generalisation levels: where a mask was selected relative to what it is evaluated on -------------------
LEVEL_VARIATION = "variation"
LEVEL_LOO = "leave-one-out"
IN_CONTEXT = "domain (in-sample)"
TRANSFER = "domain (transfer)"
HELD_OUT = "cross (held out)"
LEVELS = (LEVEL_VARIATION, LEVEL_LOO, IN_CONTEXT, TRANSFER, HELD_OUT)
OTHER_CONTEXT = (TRANSFER, HELD_OUT)  # selected outside the evaluated domain
# Row labels of the transfer matrix for the pooled within-domain conditions.
SELECTION_NOUNS = {VARIATION: "variation masks", LOO: "leave-one-out masks"}


def generalisation(scope: str, in_sample: bool) -> str | None:
    """The level of a mask of `scope` evaluated in-sample or not (None: a cross mask on a domain it was
    selected on, which is no level)."""
    if scope == VARIATION:
        return LEVEL_VARIATION
    if scope == LOO:
        return LEVEL_LOO
    if scope == DOMAIN:
        return IN_CONTEXT if in_sample else TRANSFER
    if scope == CROSS:
        return None if in_sample else HELD_OUT
    raise ValueError(f"not a scope: {scope!r} (one of {', '.join(SCOPES)})")


def units_label(unit, method):
    """`{unit}/{method}`, e.g. 'weights/wanda' (strings or pandas Series alike)."""
    return unit + "/" + method


def share_count(share: float, total: int) -> int:
    """Components a share of `total` prunes: the share times the total, rounded half to even (Python's
    round), at least one."""
    return max(1, round(share * total))


@dataclass(frozen=True)
class Condition:
    """What one mask is selected on. `domain`: the domain it belongs to (cross: the one left out);
    `variation`: at the `variation` and `loo` scopes, the variation selected on or held out, None for the
    condition pooled over the domain's variations; None at the other scopes."""

    scope: str
    domain: str
    variation: str | None = None

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"not a scope: {self.scope!r} (one of {', '.join(SCOPES)})")
        if self.variation is not None and self.scope not in WITHIN:
            raise ValueError(f"a {self.scope} condition has no variation, got {self.variation!r}")

    @property
    def pooled(self) -> bool:
        return self.scope in WITHIN and self.variation is None

    def pool(self) -> Condition:
        """The pooled condition this one belongs to (`{d}/*` or `{d}/-*`)."""
        if self.scope not in WITHIN:
            raise ValueError(f"a {self.scope} condition is not pooled: {self.format()!r}")
        return Condition(self.scope, self.domain)

    def format(self) -> str:
        variation = POOLED if self.variation is None else self.variation
        if self.scope == VARIATION:
            return f"{self.domain}/{variation}"
        if self.scope == LOO:
            return f"{self.domain}/-{variation}"
        return f"-{self.domain}" if self.scope == CROSS else self.domain

    def selection_label(self) -> str:
        """Its row of the transfer matrix: '{d} (variation masks)', '{d} (leave-one-out masks)', or the name."""
        if self.scope in WITHIN:
            return f"{self.domain} ({SELECTION_NOUNS[self.scope]})"
        return self.format()

    @classmethod
    def parse(cls, text: str, scope: str | None = None) -> Condition:
        """The condition a name stands for; `scope` where known (it decides names the syntax leaves open)."""
        if scope is None:
            _, slash, rest = text.partition("/")
            scope = (
                (LOO if rest.startswith("-") else VARIATION)
                if slash
                else CROSS
                if text[:1] == "-"
                else DOMAIN
            )
        if scope in WITHIN:
            domain, slash, rest = text.partition("/")
            if not slash or not domain or (scope == LOO and not rest.startswith("-")):
                raise ValueError(f"not a {scope} condition: {text!r}")
            variation = rest.removeprefix("-") if scope == LOO else rest
            if not variation:
                raise ValueError(f"not a {scope} condition: {text!r}")
            return cls(scope, domain, None if variation == POOLED else variation)
        if scope == CROSS:
            if not text.startswith("-") or len(text) < 2:
                raise ValueError(f"not a cross condition: {text!r}")
            return cls(CROSS, text[1:])
        if scope == DOMAIN and not text:
            raise ValueError("not a domain condition: ''")
        return cls(scope, text)


def scope_selections(scope: str, variations: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list[str]]]:
    """{condition name: {domain: [variations it is selected on]}} of one scope over `variations` ({domain:
    its variations}); `loo` needs two variations of a domain, `cross` two domains."""
    out: dict[Condition, dict[str, list[str]]] = {}
    for domain, names in variations.items():
        if scope == VARIATION:
            out |= {Condition(VARIATION, domain, v): {domain: [v]} for v in names}
        elif scope == LOO and len(names) > 1:
            out |= {Condition(LOO, domain, held): {domain: [v for v in names if v != held]} for held in names}
        elif scope == DOMAIN:
            out[Condition(DOMAIN, domain)] = {domain: list(names)}
        elif scope == CROSS and len(variations) > 1:
            out[Condition(CROSS, domain)] = {d: list(v) for d, v in variations.items() if d != domain}
    return {condition.format(): selection for condition, selection in out.items()}


_INTEGER = re.compile(r"[+-]?\d+")


def _number(text: str) -> int | float:
    """A setting's number as written: an integer stays an int (so `format` writes it back unchanged)."""
    return int(text) if _INTEGER.fullmatch(text) else float(text)


@dataclass(frozen=True)
class Setting:
    """One mask of a condition. `kind`: tau (weights), fraction (neurons), share (heads), k (neurons,
    heads) or layers (directions); `value`: the selected group's tau, the share of units, their count, or
    the number of residual layers edited (`all` or a count); `protect` and `select` (tau only): the protected
    group's tau and the group selected (focal or reference)."""

    kind: str
    value: int | float | str
    protect: int | float | None = None
    select: str | None = None

    def __post_init__(self):
        if self.kind not in SETTING_KINDS:
            raise ValueError(f"not a setting kind: {self.kind!r} (one of {', '.join(SETTING_KINDS)})")
        if (self.kind == TAU) != (self.protect is not None and self.select is not None):
            raise ValueError(f"protect and select belong to tau settings only: {self!r}")

    def format(self) -> str:
        if self.kind == TAU:
            return f"{TAU}={self.value},{self.protect};select={self.select}"
        return f"{self.kind}={self.value}"

    @classmethod
    def parse(cls, text: str) -> Setting:
        try:
            parts = dict(part.split("=") for part in text.split(";"))
            if set(parts) == {TAU, "select"}:
                tau_select, tau_protect = (_number(x) for x in parts[TAU].split(","))
                return cls(TAU, tau_select, tau_protect, parts["select"])
            ((kind, value),) = parts.items()
            if kind in (FRACTION, SHARE, K):
                return cls(kind, _number(value))
            if kind == LAYERS:
                return cls(kind, ALL if value == ALL else int(value))
        except ValueError:
            pass
        raise ValueError(f"not a setting: {text!r}")

    def count(self, total: int) -> int:
        """Units (neurons, heads) the setting prunes out of `total`: k itself, or `share_count` of a share;
        layers (directions): all of them, or the count."""
        if self.kind == LAYERS:
            return total if self.value == ALL else int(self.value)
        if self.kind == K:
            return int(self.value)
        if self.kind == TAU:
            raise ValueError(f"a tau setting selects per matrix, not a count: {self.format()!r}")
        return share_count(float(self.value), total)


def settings(unit: str, parameters: Mapping) -> list[str]:
    """Names of the masks each condition of `unit` holds, from its `masks.<unit>` parameters, in order: every
    tau pair with every `select`, each share (fraction) then each k, or each `layers` value (directions)."""
    if unit == "directions":
        return [Setting(LAYERS, value).format() for value in parameters["layers"]]
    if unit == "weights":
        return [Setting(TAU, a, b, d).format() for a, b in parameters["tau"] for d in parameters["select"]]
    kind = SHARE_KEYS[unit]
    return [Setting(kind, value).format() for value in parameters.get(kind, ())] + [
        Setting(K, count).format() for count in parameters.get(K, ())
    ]

"""The study's vocabulary: the names of conditions and settings, scopes, controls and generalisation levels.

Every other module builds and reads these names through this one; it imports nothing.

Conditions (what a mask is selected on; their names key the mask files and the result tables), one syntax per
scope of the scope registry (SCOPE_REGISTRY, below):
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

# -- scopes (registered with what they mean in SCOPE_REGISTRY, below) ----------------------------------------
VARIATION, LOO, DOMAIN, CROSS = "variation", "loo", "domain", "cross"
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


# -- the scope registry ----------------------------------------------------------------------------------
# What a scope selects in one domain: {the condition's variation (None at a scope whose conditions belong to
# none): {domain: the variations it is selected on}}.
Selections = dict[str | None, dict[str, list[str]]]


@dataclass(frozen=True)
class Scope:
    """A way of choosing the variations a mask is selected on; everything the study does with a scope reads
    its entry. `syntax`: its condition names, `{d}` the domain, `{v}` the variation of a scope whose conditions
    belong to one variation of a domain (`within`: pooled per domain as `{v}` = `*` in the result tables);
    `tried`: where a name read without its scope tries this syntax (lowest first, `_pattern`);
    `select(domain, variations)`: its conditions of `domain` given {domain: its variations} (none where the
    scope needs more variations or domains); `levels`: its generalisation level evaluated in-sample and out of
    sample (None: no level); `targets(condition, domain, variations, cross_in_sample)`: the variations of an
    evaluated domain its condition is evaluated on; `noun`: the transfer matrix's row for its pooled
    conditions; `combines`: whether several variations are combined into one mask (the
    `masks.<unit>.common` rule); `evaluate_keys`: the `evaluate` settings its evaluations read."""

    name: str
    syntax: str
    tried: int
    select: Callable[[str, Mapping[str, Sequence[str]]], Selections]
    levels: tuple[str | None, str | None]
    targets: Callable[..., tuple[str, ...]]
    noun: str | None = None
    combines: bool = True
    evaluate_keys: tuple[str, ...] = ()

    @property
    def within(self) -> bool:
        return "{v}" in self.syntax


@cache
def _pattern(syntax: str, loose: bool) -> re.Pattern:
    """A syntax's names as a regular expression: a field runs up to the first occurrence of the character that
    follows it (`{d}/-{v}`: the domain is what precedes the first /), the last one to the end. A name read
    without its scope takes the first scope (by `tried`) whose loose pattern (fields may be empty) it fits,
    and is then parsed strictly (fields not empty) as that scope's or refused."""
    parts = re.split(r"\{([dv])\}", syntax)  # literals and fields alternate
    out = ""
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out += re.escape(part)
            continue
        stop = parts[i + 1][:1]
        body = "[^" + re.escape(stop) + "]" if stop else "."
        out += f"(?P<{part}>{body}{'*' if loose else '+'})"
    return re.compile(out, re.DOTALL)


def _own_variation(condition, domain, variations, cross_in_sample=False) -> tuple[str, ...]:
    return (condition.variation,) if condition.domain == domain else ()


def _every_domain(condition, domain, variations, cross_in_sample=False) -> tuple[str, ...]:
    return tuple(variations)


def _held_out_domain(condition, domain, variations, cross_in_sample=False) -> tuple[str, ...]:
    """The domain left out, and the domains it was selected on where `evaluate.cross_in_sample` asks."""
    return tuple(variations) if condition.domain == domain or cross_in_sample else ()


# The study's scopes, in its order (the config's default, the tables').
SCOPE_REGISTRY = (
    Scope(
        VARIATION,
        "{d}/{v}",
        1,
        lambda d, vs: {v: {d: [v]} for v in vs[d]},
        (LEVEL_VARIATION, LEVEL_VARIATION),
        _own_variation,
        noun="variation masks",
        combines=False,
    ),
    Scope(
        LOO,
        "{d}/-{v}",
        0,
        lambda d, vs: (
            {held: {d: [v for v in vs[d] if v != held]} for held in vs[d]} if len(vs[d]) > 1 else {}
        ),
        (LEVEL_LOO, LEVEL_LOO),
        _own_variation,
        noun="leave-one-out masks",
    ),
    Scope(DOMAIN, "{d}", 3, lambda d, vs: {None: {d: list(vs[d])}}, (IN_CONTEXT, TRANSFER), _every_domain),
    Scope(
        CROSS,
        "-{d}",
        2,
        lambda d, vs: {None: {o: list(v) for o, v in vs.items() if o != d}} if len(vs) > 1 else {},
        (None, HELD_OUT),
        _held_out_domain,
        evaluate_keys=("cross_in_sample",),
    ),
)
SCOPES = tuple(entry.name for entry in SCOPE_REGISTRY)
# Scopes whose conditions belong to one variation of a domain (pooled per domain in the result tables).
WITHIN = tuple(entry.name for entry in SCOPE_REGISTRY if entry.within)


def scope_entry(name: str) -> Scope:
    """The registry's entry of a scope."""
    for entry in SCOPE_REGISTRY:
        if entry.name == name:
            return entry
    raise ValueError(f"not a scope: {name!r} (one of {', '.join(e.name for e in SCOPE_REGISTRY)})")


def scope_names() -> list[str]:
    """Every registered scope, in the registry's order (SCOPES, read when the registry may have grown)."""
    return [entry.name for entry in SCOPE_REGISTRY]


def within(scope: str) -> bool:
    """Whether a scope's conditions belong to one variation of a domain (pooled per domain in the tables)."""
    return scope_entry(scope).within


def generalisation(scope: str, in_sample: bool) -> str | None:
    """The level of a mask of `scope` evaluated in-sample or not (None: a cross mask on a domain it was
    selected on, which is no level)."""
    return scope_entry(scope).levels[0 if in_sample else 1]


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
        if not scope_entry(self.scope).within and self.variation is not None:
            raise ValueError(f"a {self.scope} condition has no variation, got {self.variation!r}")

    @property
    def pooled(self) -> bool:
        return within(self.scope) and self.variation is None

    def pool(self) -> Condition:
        """The pooled condition this one belongs to (`{d}/*` or `{d}/-*`)."""
        if not within(self.scope):
            raise ValueError(f"a {self.scope} condition is not pooled: {self.format()!r}")
        return Condition(self.scope, self.domain)

    def format(self) -> str:
        variation = POOLED if self.variation is None else self.variation
        return scope_entry(self.scope).syntax.format(d=self.domain, v=variation)

    def selection_label(self) -> str:
        """Its row of the transfer matrix: '{d} (variation masks)', '{d} (leave-one-out masks)', or the name."""
        noun = scope_entry(self.scope).noun
        return f"{self.domain} ({noun})" if noun else self.format()

    @classmethod
    def parse(cls, text: str, scope: str | None = None) -> Condition:
        """The condition a name stands for; `scope` where known (it decides names the syntax leaves open)."""
        if scope is None:
            tried = sorted(SCOPE_REGISTRY, key=lambda entry: entry.tried)
            scope = next((e.name for e in tried if _pattern(e.syntax, True).fullmatch(text)), None)
            if scope is None:
                raise ValueError(f"not a condition: {text!r}")
        match = _pattern(scope_entry(scope).syntax, False).fullmatch(text)
        if not match:
            raise ValueError(f"not a {scope} condition: {text!r}")
        variation = match.groupdict().get("v")
        return cls(scope, match["d"], None if variation == POOLED else variation)


def scope_selections(scope: str, variations: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list[str]]]:
    """{condition name: {domain: [variations it is selected on]}} of one scope over `variations` ({domain:
    its variations}), as its registry entry selects (`loo` needs two variations of a domain, `cross` two
    domains)."""
    entry = scope_entry(scope)
    return {
        Condition(scope, domain, variation).format(): selection
        for domain in variations
        for variation, selection in entry.select(domain, variations).items()
    }


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

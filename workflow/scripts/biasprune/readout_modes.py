"""The readouts, one registry: the config schema's choices (`readout.mode`, `model_registry.<key>.readout`), the
settings a readout's answers depend on (so that changing another readout's setting reruns nothing), whether it
pre-fills the answer prefix, what attribution differentiates under it, and the estimand the appendix states are
all read from READOUTS. How each reads (the model calls) lives in readouts.py, keyed by the same names.

Adding a readout (CONTRIBUTING.md): an entry here, its reader in readouts.py (`READERS`), and its config
documentation (config/config.yaml and config/README.md)."""

from __future__ import annotations

from dataclasses import dataclass

# Settings of `readout` that every decoding readout reads.
DECODE_KEYS = ("use_prefix", "max_new_tokens", "max_answer_chars")


@dataclass(frozen=True)
class Readout:
    """One readout mode."""

    name: str
    # What it estimates, in one sentence the appendix prints after "Readout `<name>` estimates".
    estimand: str
    # Keys of config `readout` its answers depend on (a section, such as `exact`, as a whole).
    reads: tuple[str, ...]
    # Keys of `readout.sample` it reads (the sampler's temperature, top-p, seed, n).
    sampler: tuple[str, ...] = ()
    # Whether it draws random numbers in batch order (then `readout.batch_size` is a setting, not a resource):
    # always, or only when `readout.<section>.<key>` is above 0.
    draws: bool | tuple[str, str] = False
    # Whether it pre-fills the domain's answer prefix whatever `use_prefix` says (it scores after the prefix).
    always_prefix: bool = False
    # Whether it reads the domain's candidate grid (whose values must then be positive: it averages logs).
    grid: bool = False
    # The readout attribution scores differentiate when a model uses this one (a differentiable readout).
    attribution: str = "expected"
    # Whether it is the paper's readout (the appendix lists any other as a difference from the paper).
    paper: bool = False

    def batch_dependent(self, settings: dict) -> bool:
        """Whether the answers depend on the batches (random draws consumed in batch order) under `settings`."""
        if isinstance(self.draws, tuple):
            section, key = self.draws
            return settings[section][key] > 0
        return self.draws


READOUTS = (
    Readout(
        "expected",
        "not the paper's estimand: one number per prompt, exp(E[log value]) over the domain's candidate grid "
        "(renormalised, at the sampler's temperature); the SMD uses only the spread between names, probability "
        "off the grid is dropped (its share is recorded as coverage) and the answers sit near the grid's centre.",
        reads=("expected",),
        sampler=("temperature",),
        always_prefix=True,
        grid=True,
    ),
    Readout(
        "exact",
        "the paper's estimand without sampling noise, but for the leading number: the exact distribution of the "
        "number a sampled answer starts with (same temperature, top-p and prefix), enumerated best first until "
        "the unexplored mass is below epsilon or the node budget is spent, the rest estimated from tail draws; "
        "the SMD is that of infinitely many samples (mixture means, population variance), invalid rates are "
        "masses, and mass on answers that do not start with a number is invalid (the paper's parser, and the "
        "sampled readout's, read the first number anywhere in the answer).",
        reads=(*DECODE_KEYS, "exact"),
        sampler=("temperature", "top_p", "seed"),
        draws=("exact", "tail_draws"),
        attribution="exact",
    ),
    Readout(
        "sample",
        "the paper's estimand: n answers sampled per prompt (temperature, top-p) and parsed; the SMD is over "
        "every valid sample of a group, with Monte Carlo noise that shrinks as n grows.",
        reads=(*DECODE_KEYS, "sample"),
        draws=True,
        paper=True,
    ),
    Readout(
        "greedy",
        "one deterministic decode per prompt, parsed: the mode of the sampler's path, not its mean.",
        reads=DECODE_KEYS,
    ),
)


def readout(name: str) -> Readout:
    """The registry entry of `name` (ValueError if there is none)."""
    for entry in READOUTS:
        if entry.name == name:
            return entry
    raise ValueError(f"not a readout: {name!r} (one of {', '.join(entry.name for entry in READOUTS)})")


def answer_prefix(settings: dict, prefix: str) -> str:
    """The text a readout pre-fills the assistant turn with: the domain's answer prefix where the mode reads
    after it (always for `expected`, which scores candidates after it; else per `use_prefix`), else nothing."""
    return prefix if readout(settings["mode"]).always_prefix or settings.get("use_prefix") else ""

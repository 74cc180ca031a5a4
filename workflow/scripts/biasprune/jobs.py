"""What each job's results depend on: every rule's `params`, projected from the validated study in one place.

A job reruns when its params change, so each projection keeps exactly the settings its rule's results depend
on: a change elsewhere in the config reruns nothing here, and settings that change no result (batch sizes,
threads, GPUs) are resources, never params (`Jobs.resources`). `workflow/rules/common.smk` calls these with a
job's wildcards (`job_params("readout")`); each takes the wildcards it needs and ignores the others."""

from __future__ import annotations

from functools import cached_property

from .folds import assign_folds
from .methods import method as registry_method
from .prompts import table_names
from .readout_modes import answer_prefix, readout
from .study import MODEL_RUNTIME_KEYS, Study
from .vocabulary import scope_entry


class Jobs:
    """The params of every rule of one study."""

    def __init__(self, study: Study):
        self.study = study
        self.config = study.config

    # Shared -------------------------------------------------------------------------------------------------
    def groups(self, **_) -> tuple[str, ...]:
        """The race labels compared, reference first (every table and score depends on their order)."""
        return self.study.groups

    def metrics(self, **_) -> dict:
        """The statistics' settings (bootstrap, confidence, seed, permutations, winsorize)."""
        return self.config["metrics"]

    # Prompts -------------------------------------------------------------------------------------------
    def domain(self, domain: str, **_) -> dict:
        """Everything of the config that shapes a domain's prompts (a change reruns that domain)."""
        return {
            "variations": list(self.study.variations[domain]),
            "names": self.config["names"]["include"],
            "groups": list(self.study.groups),
            "answer_suffix": self.config["prompts"]["answer_suffix"],
        }

    def folds(self, **_) -> dict[str, list[str]]:
        """{fold: the names that select its masks} ({}: the same names select and evaluate; folds.py): the
        names table's names and those of every domain read from a user's prompt table."""
        return self._folds

    @cached_property
    def _folds(self) -> dict[str, list[str]]:
        roster = {row["name"]: row for row in self.study.names}
        for domain in self.study.domains.values():
            if domain.table is not None:
                for row in table_names(domain.table):
                    roster.setdefault(row["name"], row)
        names = self.config["names"]
        return assign_folds(roster.values(), self.study.groups, names["folds"], names["fold_seed"])

    def neutral_names(self, **_) -> list[str]:
        """The names the neutral prompts are checked against (they must mention none)."""
        return self.config["names"]["include"]

    # Models --------------------------------------------------------------------------------------------
    def model_source(self, model: str, **_) -> dict:
        """Only where the model comes from: changing how it runs (dtype, device, gpus) does not refetch it."""
        return {
            name: value for name, value in self.study.model(model).items() if name not in MODEL_RUNTIME_KEYS
        }

    def model_runtime(self, model: str, **_) -> dict:
        """How model jobs load the model (device, dtype): what their results depend on, unlike `gpus`."""
        return {name: self.study.model(model)[name] for name in ("device", "dtype")}

    def model_check_prefix(self, **_) -> str:
        """The answer prefix of the first domain, whose first prompt the model check answers."""
        return self.study.domains[self.config["domains"][0]].answer.prefix

    # Readouts ------------------------------------------------------------------------------------------
    def readout(self, model: str, **_) -> dict:
        """The readout settings the model uses: the config's `readout` with the model's overrides, keeping
        only the keys its mode reads (so a change of another mode's setting reruns nothing)."""
        settings = dict(self.config["readout"])
        entry = readout(self.study.model(model).get("readout", settings["mode"]))
        settings["use_prefix"] = self.study.model(model).get("use_prefix", settings["use_prefix"])
        chosen = {"mode": entry.name, **{name: settings[name] for name in entry.reads}}
        if entry.batch_dependent(settings):  # seeded draws follow the batches: the answers depend on them
            chosen["batch_size"] = settings["batch_size"]
        if entry.sampler:  # the sampler's settings it reads (expected: its temperature)
            chosen["sample"] = {key: settings["sample"][key] for key in entry.sampler}
        return chosen

    def answer(self, domain: str, **_) -> dict:
        """What readouts read of the domain's answer: the assistant prefix and the candidate grid."""
        answer = self.study.domains[domain].answer
        return {"prefix": answer.prefix, "grid": list(answer.grid)}

    def sequence_prefix(self, model: str, domain: str, **_) -> str:
        """The prefix the baseline answers were read after (the cache appends them to the same text)."""
        return answer_prefix(self.readout(model), self.study.domains[domain].answer.prefix)

    # Scores --------------------------------------------------------------------------------------------
    def activations(self, model: str, **_) -> dict:
        """What the activation cache depends on (its batch sizes are resources)."""
        sizes = ("batch_size", "attribution_batch_size")
        return {key: value for key, value in self.config["activations"].items() if key not in sizes}

    def attribution_readout(self, model: str, **_) -> dict | None:
        """What attribution scores differentiate (None without attribution), at the sampler's temperature (what
        both read at): the exact readout's mean over the tree its base answers stored when the readout is
        exact, else the expected readout."""
        if not self.config["activations"]["attribution"]:
            return None
        mode = readout(self.readout(model)["mode"]).attribution
        return {"mode": mode, "sample": {"temperature": self.config["readout"]["sample"]["temperature"]}}

    def scoring(self, unit: str, method: str, **_) -> dict:
        """The parameters one scoring method reads (so a change reruns that method's scores only)."""
        names = registry_method(unit, method).parameters
        return {name: self.config["scoring"][unit][name] for name in names}

    def greedy(self, **_) -> dict:
        """What the greedy head order depends on: the head counts the masks ask for (its number of steps)."""
        heads = self.config["masks"]["heads"]
        return {"share": heads["share"], "k": heads["k"]}

    # Masks and evaluation ------------------------------------------------------------------------------
    def masks(self, unit: str, scope: str, **_) -> dict:
        """The `masks` settings one unit's masks of one scope read: its own section (without the rule that
        combines variations at a scope whose registry entry combines none) and its controls (none at scopes
        outside `random_scopes`)."""
        masks = self.config["masks"]
        controlled = scope in masks["random_scopes"]
        # An empty option selects nothing: left out, so adding one to the schema reruns no masks.
        section = {key: value for key, value in masks[unit].items() if value != []}
        if not scope_entry(scope).combines:
            section.pop("common", None)
        return {
            **section,
            "random_seeds": masks["random_seeds"] if controlled else 0,
            "matched_seeds": masks["matched_seeds"] if controlled else 0,
            "generic": masks["generic"] and controlled,
        }

    def mask_signs(self, unit: str, method: str, **_) -> dict:
        """What the SMD signs a method ranked against the bias reads depend on (the winsorising band); {} for
        every other method, so that no change of the metrics reruns its masks."""
        if registry_method(unit, method).ranking != "against_bias":
            return {}
        return {"winsorize": self.config["metrics"]["winsorize"]}

    def evaluate(self, unit: str, scope: str, **_) -> dict:
        """The evaluation settings a (unit, scope) reads: head ablation for heads, in-sample cells for cross."""
        settings = self.config["evaluate"]
        return {
            **({"head_ablation": settings["head_ablation"]} if unit == "heads" else {}),
            **{key: settings[key] for key in scope_entry(scope).evaluate_keys},
        }

    def evaluated_sets(self, **_) -> list[dict]:
        """(unit, method, scope) of every mask file, in the order the metric tables list their inputs."""
        return [
            {"unit": unit, "method": method, "scope": scope}
            for unit, method in self.study.score_sets
            for scope in self.config["masks"]["scopes"]
        ]

    def export(self, **_) -> dict:
        """The mask config `export` names for `results/{model}/pruned` (empty when not set)."""
        return self.config.get("export", {})

    # Report --------------------------------------------------------------------------------------------
    def appendix(self, model: str, **_) -> dict:
        """What the appendix reports of the configuration this run used (a change re-renders it)."""
        keys = ("groups", "domains", "variations", "metrics", "scoring", "masks", "evaluate")
        return {
            "model": model,
            "about": self.study.model(model).get("about"),
            "activations": self.activations(model),  # without the batch sizes (resources, no result)
            "readout": self.readout(model),
            "names": list(self.study.names),
            "folds": self.folds(),
            "variation_counts": {key: len(self.study.variations[key]) for key in self.study.domains},
            "prefixes": {key: domain.answer.prefix for key, domain in self.study.domains.items()},
            **{key: self.config[key] for key in keys},
        }

    def comparison(self, **_) -> dict:
        """The models compared, in the order of config `models` (the order of every table, panel and column)."""
        return {"models": list(self.study.models)}

    # Resources: settings that change no result -----------------------------------------------------------
    def gpus(self, model: str, **_) -> int:
        return self.study.model(model)["gpus"]

    def batch_size(self, rule: str) -> int:
        """Prompts per forward pass of a rule: memory, not results, so a change reruns nothing (the `sample`
        readout's draws do follow its batches: there `readout.batch_size` is also a param)."""
        section, key = {
            "answers": ("readout", "batch_size"),
            "evaluate": ("readout", "batch_size"),
            "activations": ("activations", "batch_size"),
            "attribution": ("activations", "attribution_batch_size"),
            "greedy_scores": ("activations", "batch_size"),
        }[rule]
        return self.config[section][key]

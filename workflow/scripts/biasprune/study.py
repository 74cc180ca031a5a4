"""The study's specification: validated config, domain files and the names table, as frozen specs."""

from __future__ import annotations

import csv
import math
import string
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, did_you_mean, raise_all
from .methods import UNITS
from .prompts import find_name, table_variations
from .readout_modes import readout
from .schema import read_yaml, validate
from .specs import Answer, Domain, PromptTable
from .vocabulary import SHARE_KEYS

TEMPLATE_FIELDS = ("name", "variation")
TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "json", ".json": "json"}
NAME_COLUMNS = ("name", "race", "gender")
MODEL_RUNTIME_KEYS = ("dtype", "device", "gpus", "readout", "use_prefix", "hub", "about")
ROUND_MANTISSAS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)


def expand_grid(grid, file: Path) -> tuple[float, ...]:
    """Candidate answers: an explicit list, {min, max, step}, or round numbers between min and max."""
    if isinstance(grid, list):
        return tuple(sorted(float(value) for value in grid))
    low, high = float(grid["min"]), float(grid["max"])
    if high <= low:
        raise ConfigError(file, "answer.grid.max", f"a number above min ({low})", high)
    if "step" in grid:
        count = math.floor((high - low) / grid["step"] + 1e-9) + 1
        return tuple(round(low + index * grid["step"], 10) for index in range(count))
    values = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        values += [round(mantissa * 10.0**exponent, 10) for mantissa in ROUND_MANTISSAS]
    return tuple(value for value in values if low <= value <= high)


def _checked_grid(grid, file: Path) -> tuple[float, ...]:
    values = expand_grid(grid, file)
    if len(values) < 2:
        raise ConfigError(file, "answer.grid", "at least 2 candidate values", grid)
    return values


def template_fields(template: str, file: Path) -> list[str]:
    """The placeholders of `template`; only {name} and {variation}, plain, are allowed."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ConfigError(
            file, "template", "balanced braces ({{ and }} for literal ones)", str(error)
        ) from None
    fields = [name for _, name, _, _ in parsed if name is not None]
    for name, (_, _, spec, conversion) in zip(fields, (p for p in parsed if p[1] is not None), strict=True):
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise ConfigError(file, "template", "only the placeholders {name} and {variation}", f"{{{name}}}")
    if "name" not in fields:
        raise ConfigError(file, "template", "the placeholder {name}", template[:60])
    return fields


def load_domain(key: str, prompts_dir: Path) -> Domain:
    """Read and check `<prompts_dir>/<key>.yaml`."""
    file = prompts_dir / f"{key}.yaml"
    spec = validate(read_yaml(file, "a domain file"), "domain", file)
    answer = spec["answer"]
    low, high = answer["range"]
    if high <= low:
        raise ConfigError(file, "answer.range", "[low, high] with low < high", answer["range"])
    common = dict(
        key=key,
        file=file,
        description=spec["description"],
        answer=Answer(
            unit=answer["unit"],
            prefix=answer["prefix"],
            range=(float(low), float(high)),
            grid=_checked_grid(answer["grid"], file),
            favourable=answer["favourable"],
        ),
    )
    if "table" in spec:
        path = (file.parent / spec["table"]["path"]).resolve()
        if path.suffix not in TABLE_FORMATS:
            raise ConfigError(
                file, "table.path", f"a file ending in one of {sorted(TABLE_FORMATS)}", path.name
            )
        if not path.is_file():
            raise ConfigError(file, "table.path", "an existing prompt table", str(path))
        table = PromptTable(path, TABLE_FORMATS[path.suffix], spec["table"]["columns"])
        return Domain(**common, table=table, variations=table_variations(table, file))
    template_fields(spec["template"], file)
    if not spec["variations"]:
        raise ConfigError(file, "variations", "at least one variation", [])
    return Domain(
        **common, template=spec["template"], variations=tuple(spec["variations"]), suffix=spec["suffix"]
    )


def load_names(path: Path, groups: tuple[str, ...], include: list[str] = ()) -> list[dict[str, str]]:
    """Rows of the names table (name, race, gender), checked and restricted to `include` if given."""
    if not path.is_file():
        raise ConfigError(path, "names.table", "a TSV file with columns name, race, gender")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [column for column in NAME_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(
                path, f"column {missing[0]}", f"columns {', '.join(NAME_COLUMNS)}", reader.fieldnames
            )
        rows = [{column: (row[column] or "").strip() for column in NAME_COLUMNS} for row in reader]
    seen = set()
    for line, row in enumerate(rows, start=2):
        if not row["name"]:
            raise ConfigError(path, f"line {line}: name", "a non-empty name")
        if row["name"] in seen:
            raise ConfigError(path, f"line {line}: name", "each name once", row["name"])
        if row["race"] not in groups:
            raise ConfigError(
                path, f"line {line}: race", f"one of the configured groups {list(groups)}", row["race"]
            )
        seen.add(row["name"])
    unknown = [name for name in include if name not in seen]
    if unknown:
        raise ConfigError(path, "names.include", "names present in the names table", unknown[0])
    if include:
        rows = [row for row in rows if row["name"] in include]
    for group in groups:
        if not any(row["race"] == group for row in rows):
            raise ConfigError(path, "race", f"at least one name of group {group!r}")
    return rows


@dataclass(frozen=True)
class Study:
    """The validated config: groups, names, domains (with the variations used) and models."""

    config: dict
    groups: tuple[str, ...]
    names: tuple[dict, ...]
    domains: dict[str, Domain]
    variations: dict[str, tuple[str, ...]]
    neutral: tuple[str, ...]

    @property
    def models(self) -> list[str]:
        return self.config["models"]

    def model(self, key: str) -> dict:
        return self.config["model_registry"][key]

    @property
    def score_sets(self) -> list[tuple[str, str]]:
        """(unit, method) of every configured score, units in a fixed order (the config's keys are sorted)."""
        scoring = self.config["scoring"]
        return [(unit, method) for unit in UNITS for method in scoring[unit]["methods"]]


def load_study(config: dict, config_file: object, root: Path = Path()) -> Study:
    """Validate the whole study before any job is planned; raise every problem found (the config's schema
    first: later checks read its filled-in values; then each check and each domain file on its own)."""
    config = validate(config, "config", config_file)
    problems = []
    with _collected(problems):
        _check_models(config, config_file)
    groups = tuple(config["groups"])
    names = []
    with _collected(problems):
        names = load_names(root / config["names"]["table"], groups, config["names"]["include"])
        fewest = min(sum(row["race"] == group for row in names) for group in groups)
        if config["names"]["folds"] > fewest:
            expected = (
                f"at most {fewest} (every fold needs a name of each group; the fewest names of a group)"
            )
            raise ConfigError(config_file, "names.folds", expected, config["names"]["folds"])
    prompts_dir = root / config["prompts"]["dir"]
    domains, variations = {}, {}
    for index, key in enumerate(config["domains"]):
        with _collected(problems):
            domains[key] = _listed_domain(config, config_file, prompts_dir, index, key)
            chosen = config["variations"].get(key)
            unknown = [value for value in chosen or () if value not in domains[key].variations]
            if unknown:
                raise ConfigError(
                    config_file, f"variations.{key}", f"variations of {domains[key].file}", unknown[0]
                )
            variations[key] = tuple(chosen or domains[key].variations)
    for key in config["variations"]:
        if key not in config["domains"]:
            expected = f"a domain listed in domains {config['domains']}{did_you_mean(key, config['domains'])}"
            problems.append(ConfigError(config_file, f"variations.{key}", expected))
    with _collected(problems):
        _check_readouts(config, config_file, domains)
    neutral = ()
    with _collected(problems):
        neutral = load_neutral(root / config["prompts"]["neutral"], [row["name"] for row in names])
    raise_all(problems)
    return Study(config, groups, tuple(names), domains, variations, neutral)


@contextmanager
def _collected(problems: list[ConfigError]):
    """Run a check; keep its ConfigError (or several) in `problems` instead of stopping at it."""
    try:
        yield
    except ConfigError as error:
        problems.extend(getattr(error, "errors", [error]))


def _check_models(config: dict, config_file: object) -> None:
    for index, key in enumerate(config["models"]):
        if key not in config["model_registry"]:
            known = ", ".join(config["model_registry"])
            expected = f"a key of model_registry ({known}){did_you_mean(key, config['model_registry'])}"
            raise ConfigError(config_file, f"models[{index}]", expected, key)
    for key, entry in config["model_registry"].items():
        hub = entry.get("hub")
        if hub is not None and config["model_registry"].get(hub, {}).get("source") != "hf":
            expected = "the key of a `source: hf` entry of model_registry"
            raise ConfigError(config_file, f"model_registry.{key}.hub", expected, hub)
    for unit, share in SHARE_KEYS.items():
        section = config["masks"][unit]
        if not section[share] and not section["k"]:
            raise ConfigError(config_file, f"masks.{unit}", f"at least one setting in {share} or k", section)


def _listed_domain(config: dict, config_file: object, prompts_dir: Path, index: int, key: str) -> Domain:
    """The domain `domains[index]` names, read from its file."""
    if key == "neutral":
        raise ConfigError(
            config_file, f"domains[{index}]", "a domain key other than 'neutral' (reserved)", key
        )
    if not (prompts_dir / f"{key}.yaml").is_file():
        known = sorted(path.stem for path in prompts_dir.glob("*.yaml") if path.stem != "neutral")
        expected = f"a domain with a file {prompts_dir / key}.yaml (available: {', '.join(known)})"
        raise ConfigError(config_file, f"domains[{index}]", expected + did_you_mean(key, known), key)
    return load_domain(key, prompts_dir)


def _check_readouts(config: dict, config_file: object, domains: dict) -> None:
    if not config["activations"]["attribution"]:
        for unit in ("neurons", "heads"):
            if "attribution" in config["scoring"][unit]["methods"]:
                expected = "no attribution method when activations.attribution is false"
                raise ConfigError(
                    config_file, f"scoring.{unit}.methods", expected, config["scoring"][unit]["methods"]
                )
    study_modes = {
        config["model_registry"][key].get("readout", config["readout"]["mode"])
        for key in config["models"]
        if key in config["model_registry"]
    }
    if any(readout(mode).grid for mode in study_modes) or config["activations"]["attribution"]:
        for domain in domains.values():
            if min(domain.answer.grid) <= 0:
                expected = "positive candidates (the expected readout and attribution average log values)"
                raise ConfigError(domain.file, "answer.grid", expected, min(domain.answer.grid))


def load_neutral(path: Path, names: list[str]) -> tuple[str, ...]:
    """Name-free prompts for damage measurement: a YAML mapping with a non-empty list under `prompts`."""
    spec = read_yaml(path, "a YAML file of neutral prompts")
    prompts = spec.get("prompts") if isinstance(spec, dict) else None
    if not prompts or not all(isinstance(text, str) and text.strip() for text in prompts):
        raise ConfigError(path, "prompts", "a non-empty list of non-empty strings")
    for index, text in enumerate(prompts):
        hit = next((name for name in names if find_name(text, name)), None)
        if hit:
            raise ConfigError(path, f"prompts[{index}]", "a prompt without any study name", hit)
    return tuple(prompts)

"""JSON-schema validation with one-line messages and defaults filled in."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import jsonschema
import yaml

from . import readout_modes
from .errors import ConfigError, did_you_mean, raise_all
from .methods import EXPORTABLE_UNITS, UNITS, method_names
from .vocabulary import scope_names

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


@cache
def load_schema(name: str) -> dict:
    with open(SCHEMA_DIR / f"{name}.schema.yaml") as handle:
        schema = yaml.safe_load(handle)
    if name == "config":
        _registry_choices(schema)
    return schema


def _registry_choices(schema: dict) -> None:
    """The choices of units and scoring methods come from the method registry (methods.METHODS), those of
    readouts from the readout registry (readout_modes.READOUTS), the scopes (`masks.scopes` and
    `masks.random_scopes`, both every one by default, and `export.scope`) from the scope registry
    (vocabulary.SCOPE_REGISTRY)."""
    names = [entry.name for entry in readout_modes.READOUTS]
    schema["properties"]["readout"]["properties"]["mode"]["enum"] = names
    schema["$defs"]["model"]["properties"]["readout"]["enum"] = list(names)
    scoring = schema["properties"]["scoring"]["properties"]
    for unit in UNITS:
        scoring[unit]["properties"]["methods"]["items"] = {"enum": method_names(unit)}
    masks = schema["properties"]["masks"]["properties"]
    for key in ("scopes", "random_scopes"):
        masks[key]["items"] = {"enum": scope_names()}
        masks[key]["default"] = scope_names()
    export = schema["properties"]["export"]["properties"]
    export["unit"] = {"enum": list(EXPORTABLE_UNITS)}
    export["scope"] = {"enum": scope_names()}
    names = [name for unit in EXPORTABLE_UNITS for name in method_names(unit)]
    export["method"] = {"enum": list(dict.fromkeys(names))}  # a name shared by two units once


def _key(path) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key.lstrip(".") or "(top level)"


def _explain(error: jsonschema.ValidationError) -> tuple[str, str, object]:
    """(key, expected, got) for the most relevant error."""
    key = _key(error.absolute_path)
    value, kind = error.validator_value, error.validator
    if kind == "required":
        missing = next(name for name in value if name not in error.instance)
        return _key([*error.absolute_path, missing]), "this key to be present", None
    if kind == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        hint = did_you_mean(extra[0], known)
        return (
            _key([*error.absolute_path, extra[0]]),
            f"no such key{hint} (allowed: {', '.join(known)})",
            None,
        )
    if kind == "oneOf" and "description" in error.schema:
        return (
            key,
            error.schema["description"].strip(),
            None if isinstance(error.instance, dict) else error.instance,
        )
    expected = {
        "enum": f"one of {value}{did_you_mean(error.instance, value) if kind == 'enum' else ''}",
        "type": f"a value of type {value}",
        "minItems": f"at least {value} item(s)",
        "maxItems": f"at most {value} item(s)",
        "minProperties": f"at least {value} entry(ies)",
        "uniqueItems": "items without duplicates",
        "pattern": f"a string matching {value}",
        "exclusiveMinimum": f"a number above {value}",
        "minimum": f"a number of at least {value}",
        "exclusiveMaximum": f"a number below {value}",
        "maximum": f"a number of at most {value}",
        "minLength": "a non-empty string",
    }.get(kind, error.message)
    return key, expected, error.instance


def _fill_defaults(instance, schema: dict, root: dict) -> None:
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if not isinstance(instance, dict):
        return
    branches = [schema] + [
        sub.get("then", {})
        for sub in schema.get("allOf", [])
        if jsonschema.Draft202012Validator(sub.get("if", {})).is_valid(instance)
    ]
    for branch in branches:
        for name, sub in branch.get("properties", {}).items():
            if isinstance(sub, dict) and "default" in sub and name not in instance:
                instance[name] = copy.deepcopy(sub["default"])
            if isinstance(sub, dict) and name in instance:
                _fill_defaults(instance[name], sub, root)
        extra = branch.get("additionalProperties")
        if isinstance(extra, dict):
            for name, value in instance.items():
                if name not in branch.get("properties", {}):
                    _fill_defaults(value, extra, root)


def validate(instance: dict, schema_name: str, file: object) -> dict:
    """Validate `instance` against a schema of workflow/schemas/; return a copy with defaults filled and
    every mapping's keys sorted (Snakemake compares a job's parameters by their repr, so reordering the keys
    of a config or domain file must not rerun anything).

    Raises ConfigError naming `file`, the key and what was expected; every problem at once (ConfigErrors,
    one line each, in key order), each the most relevant error of its branch.
    """
    schema = load_schema(schema_name)
    if not isinstance(instance, dict):
        raise ConfigError(file, "(top level)", "a YAML mapping", type(instance).__name__)
    errors = jsonschema.Draft202012Validator(schema).iter_errors(instance)
    found = [ConfigError(file, *_explain(jsonschema.exceptions.best_match([error]))) for error in errors]
    raise_all([error for _, error in sorted({str(error): error for error in found}.items())])
    filled = copy.deepcopy(instance)
    _fill_defaults(filled, schema, schema)
    return _sorted_keys(filled)


def _sorted_keys(value):
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def read_yaml(path: str | Path, what: str = "a YAML file"):
    """Parse a YAML file; a missing file or a syntax error becomes a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "(file)", f"{what} at this path")
    try:
        with open(path) as handle:
            return yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(path, where, f"valid YAML ({problem})") from None

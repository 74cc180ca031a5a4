"""Prompt tables: one row per (domain, variation, name) with the rendered message and the name's spans."""

from __future__ import annotations

import hashlib
import re
import string
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError
from .specs import Domain, PromptTable

SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32())])
PROMPT_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("domain", pa.string()),
        ("variation", pa.string()),
        ("name", pa.string()),
        ("race", pa.string()),
        ("gender", pa.string()),
        ("text", pa.string()),
        ("name_spans", pa.list_(SPAN)),
    ]
)
NEUTRAL_SCHEMA = pa.schema([("prompt_id", pa.string()), ("text", pa.string())])


def find_name(text: str, name: str) -> list[tuple[int, int]]:
    """Character spans of every whole-word occurrence of `name` in `text`."""
    pattern = rf"(?<!\w){re.escape(name)}(?!\w)"
    return [match.span() for match in re.finditer(pattern, text)]


def render(template: str, variation: str, name: str, suffix: str = "") -> tuple[str, list[tuple[int, int]]]:
    """Fill the template; return the text and the (start, end) span of each `{name}` placeholder."""
    pieces, spans, position = [], [], 0
    for literal, field, _, _ in string.Formatter().parse(template):
        pieces.append(literal)
        position += len(literal)
        if field is None:
            continue
        value = name if field == "name" else variation
        if field == "name":
            spans.append((position, position + len(value)))
        pieces.append(value)
        position += len(value)
    text = "".join(pieces)
    return (f"{text} {suffix}" if suffix else text), spans


def prompt_id(domain: str, variation: str, name: str, text: str) -> str:
    """Stable 12-hex id: the same prompt gets the same id on every run and machine."""
    key = "\x1f".join((domain, variation, name, text)).encode()
    return hashlib.blake2b(key, digest_size=6).hexdigest()


def _row(domain: str, variation: str, name: str, race: str, gender: str, text: str, spans) -> dict:
    return {
        "prompt_id": prompt_id(domain, variation, name, text),
        "domain": domain,
        "variation": variation,
        "name": name,
        "race": race,
        "gender": gender,
        "text": text,
        "name_spans": [{"start": start, "end": end} for start, end in spans],
    }


def template_rows(
    domain: Domain, variations: Sequence[str], names: Iterable[dict], suffix: str
) -> list[dict]:
    names = list(names)
    rows = []
    for variation in variations:
        for person in names:
            text, spans = render(domain.template, variation, person["name"], suffix if domain.suffix else "")
            rows.append(
                _row(domain.key, variation, person["name"], person["race"], person["gender"], text, spans)
            )
    return rows


def _read_user_table(table: PromptTable):
    """The user's table through `datasets` (CSV, Parquet, JSONL), in a throwaway cache."""
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache:
        dataset = datasets.load_dataset(
            table.format, data_files=str(table.path), split="train", cache_dir=cache
        )
        return dataset.to_list()


def table_rows(domain: Domain, variations: Sequence[str], groups: Sequence[str], suffix: str) -> list[dict]:
    """Rows from a user's prompt table: every prompt must mention its name and carry a configured race."""
    table, columns = domain.table, {key: domain.table.columns.get(key, key) for key in _TABLE_KEYS}
    rows = []
    for index, record in enumerate(_read_user_table(table)):
        variation = str(record[columns["variation"]])
        if variation not in variations:
            continue
        text, name, race = (str(record[columns[key]]) for key in ("text", "name", "race"))
        where = f"row {index}"
        if race not in groups:
            raise ConfigError(
                table.path, f"{where}: {columns['race']}", f"one of the groups {list(groups)}", race
            )
        text = f"{text} {suffix}" if domain.suffix else text
        spans = find_name(text, name)
        if not spans:
            raise ConfigError(
                table.path, f"{where}: {columns['text']}", f"a text that mentions {name!r}", text[:60]
            )
        gender = str(record.get(columns["gender"]) or "")
        rows.append(_row(domain.key, variation, name, race, gender, text, spans))
    return rows


_TABLE_KEYS = ("text", "name", "race", "variation", "gender")


def _read_arrow(table: PromptTable, columns: list[str] | None = None) -> pa.Table:
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet

    if table.format == "parquet":
        return pyarrow.parquet.read_table(table.path, columns=columns)
    reader = pyarrow.csv.read_csv if table.format == "csv" else pyarrow.json.read_json
    data = reader(table.path)
    return data.select(columns) if columns else data


def table_variations(table: PromptTable, file: Path) -> tuple[str, ...]:
    """Check a user table's columns (at planning time) and return its variations in order of appearance."""
    columns = {key: table.columns.get(key, key) for key in _TABLE_KEYS}
    try:
        present = _read_arrow(table).column_names
    except (pa.ArrowInvalid, OSError) as error:
        raise ConfigError(
            table.path, "(file)", f"a readable {table.format} table", str(error).splitlines()[0]
        ) from None
    for key in ("text", "name", "race", "variation"):
        if columns[key] not in present:
            raise ConfigError(
                file, f"table.columns.{key}", f"a column of {table.path.name} ({present})", columns[key]
            )
    values = _read_arrow(table, [columns["variation"]]).column(0).cast(pa.string())
    return tuple(dict.fromkeys(pc.drop_null(values).to_pylist()))


def table_names(table: PromptTable) -> list[dict[str, str]]:
    """The (name, race, gender) rows of a user's prompt table, each name once (gender "" where absent)."""
    columns = {key: table.columns.get(key, key) for key in ("name", "race", "gender")}
    data = _read_arrow(table)
    gender = columns["gender"] in data.column_names
    rows = {}
    for record in data.to_pylist():
        name = str(record[columns["name"]])
        rows.setdefault(
            name,
            {
                "name": name,
                "race": str(record[columns["race"]]),
                "gender": str(record[columns["gender"]] or "") if gender else "",
            },
        )
    return list(rows.values())


def prompt_table(domain: Domain, variations, names, groups, suffix: str) -> pa.Table:
    """The prompt table of one domain; prompt ids are checked unique."""
    if domain.table is not None:
        rows = table_rows(domain, variations, groups, suffix)
    else:
        rows = template_rows(domain, variations, names, suffix)
    ids = [row["prompt_id"] for row in rows]
    if len(set(ids)) != len(ids):
        source = domain.table.path if domain.table else domain.file
        raise ConfigError(source, "prompts", "each (variation, name, text) once", "a duplicate row")
    return pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA)


def neutral_table(prompts: Sequence[str]) -> pa.Table:
    rows = [{"prompt_id": prompt_id("neutral", "", "", text), "text": text} for text in prompts]
    return pa.Table.from_pylist(rows, schema=NEUTRAL_SCHEMA)

"""The study's plain specs: what a domain asks for (Answer), a user's own prompt table (PromptTable) and one
domain (Domain). Frozen values with no behaviour; study.py builds them from the config and the domain files,
prompts.py renders and reads them. This module imports nothing from the library."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Answer:
    """What a domain asks for and how readouts read it."""

    prefix: str
    grid: tuple[float, ...]
    unit: str = ""
    range: tuple[float, float] = (-math.inf, math.inf)
    favourable: str = "neutral"


@dataclass(frozen=True)
class PromptTable:
    """A user's own prompts: a table file and the names of its columns."""

    path: Path
    format: str
    columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Domain:
    """One use case: a template with variations, or a table of the user's own prompts."""

    key: str
    file: Path
    description: str
    answer: Answer
    template: str | None = None
    variations: tuple[str, ...] = ()
    suffix: bool = False
    table: PromptTable | None = None

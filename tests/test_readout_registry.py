"""The readout registry (readout_modes.READOUTS) is the one place a readout is declared: a new entry and its
reader reach the config's choices, the answers job's parameters, the appendix and read_answers, and
CONTRIBUTING names exactly the places this test had to touch."""

import re

import pandas as pd
import pytest
import yaml
from conftest import ROOT, readout_settings

from biasprune import readout_modes, readouts
from biasprune.errors import ConfigError
from biasprune.jobs import Jobs
from biasprune.models import load_model
from biasprune.report.appendix import PAPER_GEOMETRY, limitations
from biasprune.schema import load_schema
from biasprune.specs import Answer
from biasprune.study import load_study

MEDIAN = readout_modes.Readout(
    "median",
    "the median of the sampler's leading number (a made-up readout of this test).",
    reads=("use_prefix", "max_new_tokens"),
    sampler=("temperature", "seed"),
    draws=True,
)


@pytest.fixture
def registered(monkeypatch):
    """MEDIAN registered the way CONTRIBUTING says: an entry in READOUTS and a reader in READERS. The
    reader records what it was handed; the schema cache is cleared so the choices are read again."""
    calls = []

    def reader(columns, reading, rows, texts):
        calls.append((reading.settings["mode"], [row["text"] for row in rows], texts))

    monkeypatch.setattr(readout_modes, "READOUTS", (*readout_modes.READOUTS, MEDIAN))
    monkeypatch.setitem(readouts.READERS, "median", reader)
    load_schema.cache_clear()
    yield calls
    load_schema.cache_clear()


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_every_registered_readout_has_a_reader_and_every_reader_a_registry_entry():
    assert [entry.name for entry in readout_modes.READOUTS] == ["expected", "exact", "sample", "greedy"]
    assert set(readouts.READERS) == {entry.name for entry in readout_modes.READOUTS}
    assert [entry.name for entry in readout_modes.READOUTS if entry.paper] == ["sample"]


def test_a_new_registry_entry_is_a_config_choice_with_its_own_job_parameters_appendix_and_reader(
    registered, tiny_llama_dir
):
    config = default_config()
    config["readout"]["mode"] = "median"
    config["readout"]["batch_size"] = 3
    spec = load_study(config, "config/config.yaml", ROOT)  # the schema accepts the new choice
    model = config["models"][0]
    settings = config["readout"]
    # The answers job reads exactly the entry's keys: its `reads`, its sampler keys, and the batch size
    # because it draws in batch order; nothing of another readout's section.
    assert Jobs(spec).readout(model) == {
        "mode": "median",
        "use_prefix": settings["use_prefix"],
        "max_new_tokens": settings["max_new_tokens"],
        "batch_size": 3,
        "sample": {"temperature": settings["sample"]["temperature"], "seed": settings["sample"]["seed"]},
    }
    # The appendix states its estimand and lists it as a difference from the paper.
    conditions = pd.DataFrame({"vacuous": [False], "control": ["pruned"], "level": ["domain"]})
    appendix_config = {
        "names": ["a", "b"],
        "readout": {"mode": "median", "use_prefix": False},
        "variation_counts": {"purchase": 2},
        "masks": {"heads": {}, "weights": {}},
        "scoring": {"directions": {"methods": []}},
    }
    rows = limitations(appendix_config, dict(PAPER_GEOMETRY), conditions)
    assert "readout `median` (the paper sampled 100 answers)" in rows[0]
    assert f"Readout `median` estimates {MEDIAN.estimand}" in rows
    # read_answers hands every batch to the entry's reader, in order.
    model, tokenizer = load_model(tiny_llama_dir, device="cpu")
    prompts = [{"text": f"Offer {k}?"} for k in range(5)]
    answer = Answer(prefix="$", grid=(1.0, 2.0), range=(0.0, 10.0))
    readouts.read_answers(model, tokenizer, prompts, answer, readout_settings("median", batch_size=3))
    assert [(mode, texts) for mode, texts, _ in registered] == [
        ("median", ["Offer 0?", "Offer 1?", "Offer 2?"]),
        ("median", ["Offer 3?", "Offer 4?"]),
    ]


def test_without_the_entry_the_choice_is_refused_naming_the_registered_ones():
    load_schema.cache_clear()
    config = default_config()
    config["readout"]["mode"] = "median"
    with pytest.raises(ConfigError) as error:
        load_study(config, "config/config.yaml", ROOT)
    assert "readout.mode" in str(error.value)
    assert all(name in str(error.value) for name in ("expected", "exact", "sample", "greedy"))


def test_contributing_names_the_places_a_readout_touches_and_the_docs_name_every_readout():
    """CONTRIBUTING's "A readout." paragraph names the two code places the test above touched (the registry
    entry and its reader) and the two documentation places (besides the modules existing readers call), and those document every registered readout."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    paragraph = text.split("**A readout.**", 1)[1].split("\n\n", 1)[0]
    places = set(re.findall(r"`([\w/.]+\.(?:py|yaml|md))`", paragraph))
    touched = {"readout_modes.py", "readouts.py", "config/config.yaml", "config/README.md"}
    examples = {"decoding.py", "grid.py", "exact.py"}  # where an existing reader's model calls live
    assert places == touched | examples | {"tests/test_readout_registry.py"}
    assert "READOUTS" in paragraph and "READERS" in paragraph
    comment = (ROOT / "config/config.yaml").read_text().split("\nreadout:\n", 1)[1].split("  mode:", 1)[0]
    section = (ROOT / "config/README.md").read_text().split("## Readouts\n", 1)[1].split("\n## ", 1)[0]
    for entry in readout_modes.READOUTS:
        assert f"{entry.name}:" in comment, entry.name
        assert f"- `{entry.name}`:" in section, entry.name

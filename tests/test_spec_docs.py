"""docs/spec.md covers every key the schema knows, and its examples say what specgrad says."""

import dataclasses
import re

from conftest import ROOT

from specgrad.spec.schema import editor_schema

DOC = (ROOT / "docs" / "spec.md").read_text()
# spec.md is the entry point; op arguments, runner settings, layers and data sources have pages of their own
ALL_DOCS = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
FENCED = re.findall(r"```.*?```", ALL_DOCS, re.S)  # code blocks, then inline code spans
INLINE = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", ALL_DOCS, flags=re.S))
CODE_WORDS = {w for span in FENCED + INLINE for w in re.findall(r"\w+", span)}


def keys(schema) -> set:
    out = set()
    if isinstance(schema, dict):
        out |= set(schema.get("properties", {}))
        for value in schema.values():
            out |= keys(value)
    elif isinstance(schema, list):
        for value in schema:
            out |= keys(value)
    return out


def test_every_key_is_documented():
    undocumented = sorted(k for k in keys(editor_schema()) if k not in CODE_WORDS)
    assert undocumented == []


def test_documented_bad_spec_messages_are_the_real_ones():
    outputs = {
        line for p in (ROOT / "tests" / "data" / "bad_specs").glob("*.expected") for line in p.read_text().splitlines()
    }
    quoted = [
        line
        for line in re.findall(r"^(\S+\.yaml:\d+:\d+: (?:error|warning): .*)$", DOC, re.M)
        if not line.startswith(("child.yaml", "spec.yaml", "--set"))
    ]
    assert quoted and all(line in outputs for line in quoted), [q for q in quoted if q not in outputs]


def test_reference_tables_are_the_generated_ones():
    """Every table of docs/spec.md between 'spec reference' markers is what the schema and the registries say
    today: a new optimizer, setting, default or bound changes the page, or this fails."""
    from specgrad.spec.reference import splice

    assert splice(DOC) == DOC, "regenerate with: python -m specgrad.spec.reference docs/spec.md"


def test_the_tables_name_every_component():
    from specgrad.data.sources import SOURCES
    from specgrad.model.init import INITIALIZERS
    from specgrad.model.layers import LAYERS
    from specgrad.model.losses import LOSSES
    from specgrad.model.metrics import METRICS
    from specgrad.optim.optimizers import OPTIMIZERS
    from specgrad.optim.schedules import SCHEDULES

    rows = set(re.findall(r"^\| `(\w+)` \|", DOC, re.M))
    for registry in (SOURCES, INITIALIZERS, LAYERS, LOSSES, METRICS, OPTIMIZERS, SCHEDULES):
        assert set(registry.names()) <= rows, registry.kind


def test_defaults_the_page_states_are_the_code_s(tmp_path):
    """What the train table says without a factory to read it from, checked by running: log_every defaults
    to 1 (every step is logged), and clip takes any one bound (max_norm is not required)."""
    import json

    from conftest import MODELS, run_cli

    assert "| `log_every` | no | integer ≥ 1; write every Nth step to metrics.jsonl; default 1 |" in DOC
    from specgrad.spec.settings import Train

    for f in dataclasses.fields(Train):  # every train default the code has, the page states
        if f.default is not None and f.default is not dataclasses.MISSING:
            row = next(line for line in DOC.splitlines() if line.startswith(f"| `{f.name}` |"))
            assert "default" in row, row
    assert "| `clip.max_norm` | no |" in DOC
    done = run_cli(
        "train",
        MODELS / "poly.yaml",
        "--set",
        "train.steps=7",
        "--set",
        "train.checkpoint=null",
        "--set",
        "train.clip={max_value: 1.0}",
        "--run-dir",
        tmp_path / "run",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))

"""docs/spec.md covers every key the schema knows, and its examples say what specgrad says."""
import re

from conftest import ROOT
from specgrad.spec.schema import editor_schema

DOC = (ROOT / "docs" / "spec.md").read_text()
# spec.md is the entry point; op arguments, runner settings, layers and data sources have pages of their own
ALL_DOCS = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
FENCED = re.findall(r"```.*?```", ALL_DOCS, re.S)            # code blocks, then inline code spans
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
    outputs = {line for p in (ROOT / "tests" / "data" / "bad_specs").glob("*.expected")
               for line in p.read_text().splitlines()}
    quoted = [line for line in re.findall(r"^(\S+\.yaml:\d+:\d+: (?:error|warning): .*)$", DOC, re.M)
              if not line.startswith(("child.yaml", "spec.yaml", "--set"))]
    assert quoted and all(line in outputs for line in quoted), [l for l in quoted if l not in outputs]

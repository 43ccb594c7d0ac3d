"""Composition of a spec from its file and command-line overrides (``--set key.path=value``).

An override's value is YAML-typed (``0.01`` is a number, ``[1, 2]`` a list), parsed as safely as
``yaml.safe_load``; the dotted path may index lists (``model.nodes.0``). The overridden value's location
becomes the ``--set`` argument itself, so errors point there."""
from __future__ import annotations

import yaml

from specgrad.spec.errors import Location, SpecError
from specgrad.spec.load import Document


def parse_override(text: str) -> tuple[tuple, object, Location]:
    loc = Location(f"--set {text}", 1, 1)
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError.at(loc, "expected --set KEY=VALUE, e.g. --set optimizer.lr=0.01")
    path = tuple(int(p) if p.lstrip("-").isdigit() else p for p in key.strip().split("."))
    if any(p == "" for p in path):
        raise SpecError.at(loc, f"empty name in key path '{key}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise SpecError.at(Location(loc.file, 1, len(key) + 2), f"cannot parse value: {e.problem or e}") from None
    return path, value, Location(loc.file, 1, len(key) + 2)


def apply_overrides(doc: Document, overrides) -> Document:
    """Set each ``KEY=VALUE`` in ``doc`` (in place), recording the override as the value's location."""
    for text in overrides:
        path, value, loc = parse_override(text)
        parent = doc.data
        for depth, key in enumerate(path[:-1]):
            child = _child(parent, key)
            if child is None:
                if not isinstance(parent, dict):
                    raise SpecError.at(loc, f"'{'.'.join(map(str, path[:depth + 1]))}' does not exist")
                child = parent[key] = {}
            parent = child
        last = path[-1]
        if isinstance(parent, list):
            if not isinstance(last, int) or not -len(parent) <= last < len(parent):
                raise SpecError.at(loc, f"index {last} is out of range for a list of {len(parent)}")
            parent[last] = value
        elif isinstance(parent, dict):
            parent[last] = value
        else:
            raise SpecError.at(loc, f"'{'.'.join(map(str, path[:-1]))}' is not a mapping or list")
        for table in (doc.locations, doc.key_locations):
            for p in [p for p in table if p[:len(path)] == path]:
                del table[p]
        doc.locations[path] = doc.key_locations[path] = loc
    return doc


def _child(parent, key):
    if isinstance(parent, dict):
        return parent.get(key)
    if isinstance(parent, list) and isinstance(key, int) and -len(parent) <= key < len(parent):
        return parent[key]
    return None

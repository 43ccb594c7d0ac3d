"""The resolved spec as YAML (``specgrad config``), optionally with each value's origin as a comment."""

from __future__ import annotations

import yaml

from specgrad.spec.load import Document

COMMENT_COLUMN = 40


def resolved_yaml(doc: Document, explain: bool = False) -> str:
    """YAML that loads back to ``doc.data``; with ``explain``, every line ends in ``# file:line:col`` of
    the value it holds, with the value's history (what it overrides, which reference it came from)."""
    if not explain:
        return spec_yaml(doc.data)

    lines = list(_lines(doc, doc.data, (), 0))
    width = min(max(len(text) for text, _ in lines), COMMENT_COLUMN)
    return "".join(f"{text.ljust(width)}  # {doc.loc(path).point()}\n" for text, path in lines)


def _lines(doc: Document, value, path: tuple, indent: int):
    """(text, path of the value it shows) for each line of the block-style YAML of ``value``."""
    pad = " " * indent
    if isinstance(value, dict):
        for key, child in value.items():
            if _inline(child):
                yield f"{pad}{_flow(key, literal=False)}: {_flow(child)}", path + (key,)
            else:
                yield f"{pad}{_flow(key, literal=False)}:", path + (key,)
                yield from _lines(doc, child, path + (key,), indent + 2)
        return
    for i, child in enumerate(value):
        if _inline(child):
            yield f"{pad}- {_flow(child)}", path + (i,)
            continue
        first, *rest = _lines(doc, child, path + (i,), indent + 2)
        yield f"{pad}- {first[0].lstrip()}", first[1]
        yield from rest


def _inline(value) -> bool:
    if isinstance(value, (dict, list)):
        return not value or (isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value))
    return True


def _flow(value, literal: bool = True) -> str:
    """One value in flow style (a key: ``literal=False``, for references are resolved in values only)."""
    text = _dump(value, literal, default_flow_style=True, width=10**6)
    return text.removesuffix("\n...\n").strip()


def spec_yaml(data: dict) -> str:
    """A resolved spec as YAML that a spec file can hold, loading back to the same spec."""
    return _dump(data, sort_keys=False, default_flow_style=None, width=100)


def _dump(value, literal: bool = True, **style) -> str:
    """YAML of ``value`` as a spec writes it: a literal ``${`` (all a resolved spec can hold: references are
    resolved) is written ``$${`` so that it stays literal, and where characters YAML reads as line breaks
    (U+0085, U+2028) would not come back as written, non-ASCII text is escaped."""
    written = _literal(value) if literal else value
    text = yaml.safe_dump(written, allow_unicode=True, **style)
    if yaml.safe_load(text) != written:
        text = yaml.safe_dump(written, allow_unicode=False, **style)
    return text


def _literal(value):
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):  # keys as they are: references are resolved in values only
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value

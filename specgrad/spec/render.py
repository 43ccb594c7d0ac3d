"""The resolved spec as YAML (``specgrad config``), optionally with each value's origin as a comment."""

from __future__ import annotations

import yaml

from specgrad.spec.load import Document

COMMENT_COLUMN = 40


def resolved_yaml(doc: Document, explain: bool = False) -> str:
    """YAML that loads back to ``doc.data``; with ``explain``, every line ends in ``# file:line:col`` of
    the value it holds, with the value's history (what it overrides, which reference it came from)."""
    if not explain:
        return yaml.safe_dump(doc.data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
    lines = list(_lines(doc, doc.data, (), 0))
    width = min(max(len(text) for text, _ in lines), COMMENT_COLUMN)
    return "".join(f"{text.ljust(width)}  # {doc.loc(path).point()}\n" for text, path in lines)


def _lines(doc: Document, value, path: tuple, indent: int):
    """(text, path of the value it shows) for each line of the block-style YAML of ``value``."""
    pad = " " * indent
    if isinstance(value, dict):
        for key, child in value.items():
            if _inline(child):
                yield f"{pad}{_flow(key)}: {_flow(child)}", path + (key,)
            else:
                yield f"{pad}{_flow(key)}:", path + (key,)
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


def _flow(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()

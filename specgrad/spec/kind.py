"""Which YAML files are specs. A pre-commit hook hands ``specgrad validate`` every changed YAML file of a
repository (CI workflows, ``.pre-commit-config.yaml``, docker-compose files...); with ``--skip-non-specs``
those are skipped with a note instead of failing the commit. A spec says what it is at its top level:
``specgrad: 1``, or ``extends:`` for a spec that takes the rest from its bases."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from specgrad.base.diagnostics import SpecError
from specgrad.base.fileio import read_head
from specgrad.spec.load import load_file

MARKERS = ("specgrad", "extends")
# a top-level key in block style, quoted or not: what is left to look for when the file is not plain YAML a
# spec could be (custom tags such as CloudFormation's !Ref, GitHub's `on:` key, which YAML reads as true)
_TOP_LEVEL_MARKER = re.compile(r"""^["']?(?:specgrad|extends)["']?[ \t]*:""", re.MULTILINE)


def is_spec(path) -> bool:
    """Whether ``path`` declares itself a spec. A file that cannot be read or loaded counts as a spec when
    its text has a top-level ``specgrad:`` or ``extends:`` key (so validating it reports the problem), and
    one that cannot be read at all counts as a spec too: its error is reported, never hidden."""
    try:
        data = load_file(path).data
    except SpecError:
        head = read_head(path, 1 << 20)  # never blocks: a FIFO or a device gives None
        if head is None:
            return True
        return bool(_TOP_LEVEL_MARKER.search(head.decode("utf-8", errors="replace")))
    return any(key in data for key in MARKERS)


def split_specs(files: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(specs, others) of ``files``, in order."""
    specs: list[Path] = []
    others: list[Path] = []
    for f in files:
        (specs if is_spec(f) else others).append(f)
    return specs, others

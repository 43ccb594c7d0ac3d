"""Mistakes in the ``--set`` flags themselves, told apart from a spec that a well-formed override makes
invalid: no ``=``, an empty name, a value that does not parse, or a path that cannot be set in this spec
(an index out of range, a key under a scalar). The command line treats the first kind as a usage error
(exit 2), like an unknown flag; the second is the spec's error (exit 1), reported by validation."""

from __future__ import annotations

from specgrad.base.diagnostics import Diagnostic, Location, SpecError
from specgrad.spec.compose import Value, apply_overrides, compose, tree


def override_errors(path, overrides) -> list[Diagnostic]:
    """The diagnostics of ``overrides`` that are mistakes in the flags, applied to the spec at ``path``
    (to an empty spec, for their syntax alone, when that file does not compose: its own errors come later)."""

    if not overrides:
        return []
    try:
        root = tree(compose(path))
    except (SpecError, OSError, ValueError):
        root = Value({}, Location("--set", 1, 1))
    try:
        apply_overrides(root, overrides)
    except SpecError as e:
        return e.diagnostics
    return []

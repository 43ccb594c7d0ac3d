"""The spec pipeline: load (YAML with locations) -> compose (extends, include, --set, ${...}) -> validate
(schema + semantics) -> typed settings."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from specgrad.base.diagnostics import Diagnostic, Location, SpecError  # noqa: F401 -- Location: part of this package's face
from specgrad.model.build import Model
from specgrad.spec.compose import attribute, compose, compose_mapping, default_roots
from specgrad.spec.load import Document
from specgrad.spec.settings import Settings, settings_of
from specgrad.spec.validate import validate as validate_document


@dataclass
class Spec:
    """A resolved, validated spec: its values with their locations, its typed settings and the compiled model."""

    doc: Document
    model: Model
    warnings: list[Diagnostic]

    @property
    def data(self) -> dict:
        return self.doc.data

    @cached_property
    def settings(self) -> Settings:
        """The typed, frozen settings the runner reads (every default filled in)."""
        return settings_of(self.doc.data)

    def error(self, diagnostics: list[Diagnostic]) -> SpecError:
        """Problems found after validation (in the data, say), named as validation names them: a place in a
        base or fragment says which spec was checked and how it reached that file."""
        return SpecError(attribute(diagnostics, self.doc.file, self.doc.origins))


def load_spec(path, overrides=(), roots=(), *, data_files: bool = True) -> Spec:
    """Load, compose and validate the spec at ``path``; raises SpecError listing every problem. Files are
    read only inside the working directory, the spec's folder and ``roots`` (``--root``); ``data_files``:
    whether its data files are checked (False for what reads none, as predict)."""
    return _validated(compose(path, overrides, default_roots(path, roots)), data_files)


def load_mapping(values: dict, overrides=(), roots=()) -> Spec:
    """``load_spec`` for a spec given as a mapping of plain values; relative paths resolve against the
    working directory."""
    return _validated(compose_mapping(values, overrides, default_roots(Path.cwd() / "spec", roots)))


def with_top(spec: Spec, **values) -> Spec:
    """``spec`` validated again with top-level keys set to ``values`` (``dtype="float64"``): everything else as
    composed (its files, overrides and roots), whether it came from a file or a mapping."""
    doc = spec.doc
    return _validated(
        Document({**doc.data, **values}, doc.file, doc.locations, doc.key_locations, doc.roots, doc.origins)
    )


def _validated(doc: Document, data_files: bool = True) -> Spec:
    diagnostics, model = validate_document(doc, data_files)
    diagnostics = attribute(diagnostics, doc.file, doc.origins)
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors:
        raise SpecError(diagnostics)
    return Spec(doc, model, diagnostics)


def find_spec_files(paths) -> tuple[list, list[str]]:
    """The spec files named by ``paths`` (files, folders searched for *.yaml and *.yml, globs), and the
    paths that named nothing. Inside a folder, a file or folder whose name starts with ``_`` is a
    fragment -- a base or a block meant to be extended or included, not a spec on its own -- and is
    skipped; naming it directly still checks it."""
    files, unmatched = [], []
    for p in map(str, paths):
        matches = sorted(glob.glob(p, recursive=True)) if glob.has_magic(p) else [p] if Path(p).exists() else []
        found = []
        for m in map(Path, matches):
            if m.is_dir():
                found += sorted(
                    f
                    for f in m.rglob("*")
                    if f.suffix in (".yaml", ".yml")
                    and f.is_file()
                    and not any(part.startswith("_") for part in f.relative_to(m).parts)
                )
            else:
                found.append(m)
        if found:
            files += found
        elif glob.has_magic(p) or Path(p).is_dir():
            unmatched.append(p)
        else:
            files.append(Path(p))  # a missing file: reported as a located error like any other
    return files, unmatched


def check_spec(path, overrides=(), roots=()) -> tuple[bool, list[Diagnostic]]:
    """(valid, diagnostics) for one spec file: everything `specgrad validate` reports about it."""
    try:
        return True, load_spec(path, overrides, roots).warnings
    except SpecError as e:
        return False, e.diagnostics

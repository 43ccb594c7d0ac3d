"""The spec pipeline: load (YAML with locations) -> compose (extends, include, --set, ${...}) -> validate
(schema + semantics)."""
from __future__ import annotations

from dataclasses import dataclass

from specgrad.base.diagnostics import Diagnostic, Location, SpecError


@dataclass
class Spec:
    """A resolved, validated spec: its values with their locations, and the compiled model."""
    doc: object            # specgrad.spec.load.Document
    model: object          # specgrad.model.build.Model
    warnings: list[Diagnostic]

    @property
    def data(self) -> dict:
        return self.doc.data


def load_spec(path, overrides=()) -> Spec:
    """Load, compose and validate the spec at ``path``; raises SpecError listing every problem."""
    from specgrad.spec.compose import compose
    from specgrad.spec.validate import validate

    doc = compose(path, overrides)
    diagnostics, model = validate(doc)
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors:
        raise SpecError(diagnostics)
    return Spec(doc, model, diagnostics)


def find_spec_files(paths) -> tuple[list, list[str]]:
    """The spec files named by ``paths`` (files, folders searched for *.yaml and *.yml, globs), and the
    paths that named nothing. Inside a folder, a file or folder whose name starts with ``_`` is a
    fragment -- a base or a block meant to be extended or included, not a spec on its own -- and is
    skipped; naming it directly still checks it."""
    import glob
    from pathlib import Path

    files, unmatched = [], []
    for p in map(str, paths):
        matches = sorted(glob.glob(p, recursive=True)) if glob.has_magic(p) else [p] if Path(p).exists() else []
        found = []
        for m in map(Path, matches):
            if m.is_dir():
                found += sorted(f for f in m.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file()
                                and not any(part.startswith("_") for part in f.relative_to(m).parts))
            else:
                found.append(m)
        if found:
            files += found
        elif glob.has_magic(p) or Path(p).is_dir():
            unmatched.append(p)
        else:
            files.append(Path(p))     # a missing file: reported as a located error like any other
    return files, unmatched


def check_spec(path, overrides=()) -> tuple[bool, list[Diagnostic]]:
    """(valid, diagnostics) for one spec file: everything `specgrad validate` reports about it."""
    try:
        return True, load_spec(path, overrides).warnings
    except SpecError as e:
        return False, e.diagnostics

"""The spec pipeline: load (YAML with locations) -> compose (extends, include, --set, ${...}) -> validate
(schema + semantics)."""
from __future__ import annotations

from dataclasses import dataclass

from specgrad.spec.errors import Diagnostic, Location, SpecError


@dataclass
class Spec:
    """A resolved, validated spec: its values with their locations, and the compiled model."""
    doc: object            # specgrad.spec.load.Document
    model: object          # specgrad.graph.build.Model
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

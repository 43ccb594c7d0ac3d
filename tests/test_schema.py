"""The JSON Schema is generated from the registries (the two cannot drift), and its editor form accepts
spec files exactly as written, so an independent validator checks them before specgrad composes them."""
import importlib
import json
import pkgutil

import pytest
import yaml
from jsonschema import Draft202012Validator

import specgrad
from conftest import MODELS, ROOT, run_cli
from specgrad.base.components import Registry
from specgrad.data.datasets import DATASETS
from specgrad.model.formula import public_ops
from specgrad.spec.schema import build_schema, editor_schema


def test_committed_schema_is_the_generated_one():
    committed = json.loads((ROOT / "schemas" / "specgrad.schema.json").read_text())
    assert committed == editor_schema(), "regenerate with: specgrad schema > schemas/specgrad.schema.json"
    Draft202012Validator.check_schema(committed)
    Draft202012Validator.check_schema(build_schema())


def test_cli_prints_the_schema():
    assert json.loads(run_cli("schema").stdout) == editor_schema()


def registries() -> dict[str, Registry]:
    """Every component registry in the package (layers, losses, optimizers, ... whichever exist), by kind."""
    found = {}
    for info in pkgutil.walk_packages(specgrad.__path__, "specgrad."):
        if info.name.endswith(".cli") or info.name.startswith("specgrad.run.sweep"):
            continue        # the sweep's samplers and pruners are the sweep schema's (tests/test_sweep.py)
        module = importlib.import_module(info.name)
        found.update({v.kind: v for v in vars(module).values() if isinstance(v, Registry)})
    return found


def named_enums(schema) -> dict[str, set]:
    """title -> the names accepted wherever the schema offers a titled choice ("optimizer", "op", ...)."""
    out: dict[str, set] = {}

    def walk(node):
        if isinstance(node, dict):
            if "title" in node and "enum" in node:
                out.setdefault(node["title"], set()).update(node["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)
    return out


@pytest.mark.parametrize("make", [build_schema, editor_schema])
def test_schema_accepts_exactly_the_registered_names(make):
    regs = registries()
    assert {"loss", "optimizer", "schedule", "initializer", "data source", "metric"} <= set(regs)
    expected = {kind: set(reg.names()) for kind, reg in regs.items()}
    expected["op"] = set(public_ops())
    expected["dataset"] = set(DATASETS)        # the bundled data sets the `dataset` source offers
    assert named_enums(make()) == expected


def _example(schema):
    """A value a setting's schema accepts: 1 for integers, [1] for lists, 0.5 for other numbers."""
    kind = schema.get("type")
    if kind == "array":
        return [_example(schema.get("items", {"type": "integer"}))]
    return 1 if kind == "integer" else 0.5


def test_every_registered_name_validates_in_a_spec():
    """Not only listed: each optimizer and schedule, with its required settings, passes the schema."""
    from specgrad.optim.optimizers import OPTIMIZERS
    from specgrad.optim.schedules import SCHEDULES
    validator = Draft202012Validator(build_schema())
    base = yaml.safe_load((MODELS / "poly.yaml").read_text())
    for reg, key in ((OPTIMIZERS, "optimizer"), (SCHEDULES, "schedule")):
        for comp in reg.entries.values():
            settings = {"type": comp.name, **{r: _example(comp.properties[r]) for r in comp.required}}
            assert not list(validator.iter_errors({**base, key: settings})), comp.name
        assert list(validator.iter_errors({**base, key: {"type": "no_such_" + key}}))


def _editor_errors(data):
    return sorted(".".join(map(str, e.absolute_path)) for e in Draft202012Validator(editor_schema()).iter_errors(data))


def test_editor_schema_accepts_specs_as_written():
    for path in MODELS.glob("*.yaml"):
        assert _editor_errors(yaml.safe_load(path.read_text())) == [], path
    written = {
        "extends": ["poly.yaml", "_sgd.yaml"],            # no other key is required next to extends
        "vars": {"lr": 0.01, "width": 8},
        "optimizer": {"type": "adam", "lr": "${vars.lr}"},
        "model": {"params": {"w": {"shape": ["${vars.width}"], "init": {"include": "_init.yaml"}}}},
        "data": {"include": "_data.yaml", "n": 50},
        "schedule": None,                                  # removes the base's schedule
        "name": "run-${vars.width}",
    }
    assert _editor_errors(written) == []


def test_editor_schema_still_catches_mistakes():
    assert _editor_errors({"extends": "poly.yaml", "optimizer": {"type": "sgd", "lr": -1}}) == ["optimizer"]
    assert _editor_errors({"extends": "poly.yaml", "trian": {}}) == [""]
    assert _editor_errors({"extends": 3}) == ["extends"]
    # without extends, a spec must be complete
    assert set(_editor_errors({"specgrad": 1, "name": "x"})) == {""}


def test_every_example_spec_names_the_schema_for_editors():
    for path in MODELS.rglob("*.yaml"):
        if any(part.startswith("_") for part in path.relative_to(MODELS).parts):
            continue        # a fragment (models/_data/...) is a block of a spec, which the spec schema does not describe
        first = path.read_text().splitlines()[0]
        schema = "sweep.schema.json" if path.parent.name == "sweeps" else "specgrad.schema.json"   # sweep files
        relative = "../" * (len(path.relative_to(ROOT).parts) - 1) + "schemas/" + schema
        assert first == f"# yaml-language-server: $schema={relative}", path

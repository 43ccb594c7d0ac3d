"""The JSON Schema is generated from the registries (the two cannot drift), and its editor form accepts
spec files exactly as written, so an independent validator checks them before specgrad composes them."""

import importlib
import json
import pkgutil

import pytest
import yaml
from conftest import MODELS, ROOT, run_cli
from jsonschema import Draft202012Validator

import specgrad
from specgrad.base.components import Registry
from specgrad.data.datasets import DATASETS
from specgrad.model.formula import public_ops
from specgrad.spec.schema import build_schema, editor_schema


@pytest.mark.slow
def test_committed_schema_is_the_generated_one():
    committed = json.loads((ROOT / "schemas" / "specgrad.schema.json").read_text())
    assert committed == editor_schema(), "regenerate with: specgrad schema > schemas/specgrad.schema.json"
    Draft202012Validator.check_schema(committed)
    Draft202012Validator.check_schema(build_schema())


@pytest.mark.slow
def test_cli_prints_the_schema():
    assert json.loads(run_cli("schema").stdout) == editor_schema()


def registries() -> dict[str, Registry]:
    """Every component registry in the package (layers, losses, optimizers, ... whichever exist), by kind."""
    found = {}
    for info in pkgutil.walk_packages(specgrad.__path__, "specgrad."):
        if info.name.endswith(".cli") or info.name.startswith("specgrad.run.sweep"):
            continue  # the sweep's samplers and pruners are the sweep schema's (tests/test_sweep.py)
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
    expected["dataset"] = set(DATASETS)  # the bundled data sets the `dataset` source offers
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


@pytest.mark.slow
def test_editor_schema_accepts_specs_as_written():
    for path in MODELS.glob("*.yaml"):
        assert _editor_errors(yaml.safe_load(path.read_text())) == [], path
    written = {
        "extends": ["poly.yaml", "_sgd.yaml"],  # no other key is required next to extends
        "vars": {"lr": 0.01, "width": 8},
        "optimizer": {"type": "adam", "lr": "${vars.lr}"},
        "model": {"params": {"w": {"shape": ["${vars.width}"], "init": {"include": "_init.yaml"}}}},
        "data": {"include": "_data.yaml", "n": 50},
        "schedule": None,  # removes the base's schedule
        "name": "run-${vars.width}",
    }
    assert _editor_errors(written) == []


def test_editor_schema_still_catches_mistakes():
    assert _editor_errors({"extends": "poly.yaml", "optimizer": {"type": "sgd", "lr": -1}}) == ["optimizer.lr"]
    assert _editor_errors({"extends": "poly.yaml", "trian": {}}) == [""]
    assert _editor_errors({"extends": 3}) == ["extends"]
    # without extends, a spec must be complete
    assert set(_editor_errors({"specgrad": 1, "name": "x"})) == {""}


def test_every_example_spec_names_the_schema_for_editors():
    for path in MODELS.rglob("*.yaml"):
        if any(part.startswith("_") for part in path.relative_to(MODELS).parts):
            continue  # a fragment (models/_data/...) is a block of a spec, which the spec schema does not describe
        first = path.read_text().splitlines()[0]
        schema = "sweep.schema.json" if path.parent.name == "sweeps" else "specgrad.schema.json"  # sweep files
        relative = "../" * (len(path.relative_to(ROOT).parts) - 1) + "schemas/" + schema
        assert first == f"# yaml-language-server: $schema={relative}", path


# ------------------------------------------------------------------------- third-party validators
MISTAKES = [
    ("train", "steps", 0),
    ("train", "steps", "many"),
    ("optimizer", "lr", -1),
    ("seed", None, -3),
    ("train", "batch_size", 0),
    ("train", "checkpoint", {"every": 0}),
    ("data", "noise", "loud"),
    ("model", "output", "1bad"),
    ("train", "clip", {"max_norm": 0}),
]


@pytest.mark.parametrize("section,key,value", MISTAKES)
def test_references_do_not_hide_the_real_error(section, key, value):
    """The editor form accepts a ${...} reference or null wherever a value goes; the best-matching error a
    validator picks (jsonschema's best_match, as check-jsonschema reports it) is still the real one, the
    same as the composed spec's schema reports, never "is not of type 'string'"."""
    from jsonschema.exceptions import best_match

    spec = yaml.safe_load((MODELS / "poly.yaml").read_text())
    if key is None:
        spec[section] = value
    else:
        spec[section] = {**spec[section], key: value}
    strict = best_match(Draft202012Validator(build_schema()).iter_errors(spec))
    written = best_match(Draft202012Validator(editor_schema()).iter_errors(spec))
    assert written is not None and strict is not None
    assert (written.message, list(written.absolute_path)) == (strict.message, list(strict.absolute_path))


def _ajv() -> list[str] | None:
    """ajv-cli, if installed: on PATH, in $AJV, or under /tmp/ajv (npm install --prefix /tmp/ajv ajv-cli)."""
    import os
    import shutil

    for candidate in (os.environ.get("AJV"), shutil.which("ajv"), "/tmp/ajv/node_modules/.bin/ajv"):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    return None


@pytest.mark.skipif(_ajv() is None, reason="ajv-cli is not installed (npm install --prefix /tmp/ajv ajv-cli)")
@pytest.mark.slow  # a Node.js process: the full tier
def test_ajv_compiles_the_schema_in_strict_mode(tmp_path):
    """Ajv, the validator most JavaScript tools embed, compiles the schema in strict mode with no warning:
    no union types, every required key declared, every keyword beside its type."""
    import subprocess

    done = subprocess.run(
        [*_ajv(), "compile", "--spec=draft2020", "--strict=true", "-s", str(ROOT / "schemas" / "specgrad.schema.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "strict mode" not in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.mark.skipif(
    not __import__("shutil").which("check-jsonschema"),
    reason="check-jsonschema is not installed (pip install check-jsonschema)",
)
@pytest.mark.slow
def test_check_jsonschema_reports_the_real_error(tmp_path):
    import subprocess

    spec = (MODELS / "poly.yaml").read_text().replace("steps: 2000", "steps: 0")
    (tmp_path / "poly.yaml").write_text(spec)
    done = subprocess.run(
        [
            "check-jsonschema",
            "--schemafile",
            str(ROOT / "schemas" / "specgrad.schema.json"),
            str(tmp_path / "poly.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "$.train.steps: 0 is less than the minimum of 1" in done.stdout and "string" not in done.stdout

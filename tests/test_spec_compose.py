"""Composition (extends, include, --set, ${...}) and provenance: every resolved value knows its place."""

import textwrap

import pytest
from conftest import MODELS, run_cli

from specgrad.base.diagnostics import Location
from specgrad.spec import SpecError, load_spec
from specgrad.spec.compose import compose


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def messages(path, overrides=()):
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    return [str(d) for d in info.value.diagnostics]


BASE = """\
    specgrad: 1
    name: base
    data: {source: synthetic, function: sin(3*x), n: 20}
    model:
      inputs: {x: []}
      params: {k: {shape: [6], init: zeros}}
      nodes:
        - phi: powers(x, 5)
        - y_hat: phi @ k
      output: y_hat
    loss: sse
    optimizer: {type: sgd, lr: 0.001}
    schedule: {type: cosine, min_lr: 0.0}
    train: {steps: 10, batch_size: full}
    """


def test_extends_deep_merges_mappings_replaces_lists_and_null_removes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the base is outside the child's folder: the working directory allows it
    write(tmp_path, "base.yaml", BASE)
    child = write(
        tmp_path,
        "exp/child.yaml",
        """\
        extends: ../base.yaml
        name: child
        optimizer: {lr: 0.5}             # merged: type stays sgd
        model:
          nodes: [y_hat: "powers(x, 5) @ k"]   # a list replaces the base's whole list
        schedule: null                   # removes the base's schedule
        """,
    )
    data = compose(child).data
    assert data["name"] == "child"
    assert data["optimizer"] == {"type": "sgd", "lr": 0.5}
    assert data["model"]["nodes"] == [{"y_hat": "powers(x, 5) @ k"}]
    assert data["model"]["params"] == {"k": {"shape": [6], "init": "zeros"}}
    assert "schedule" not in data and "extends" not in data
    assert list(data)[:3] == ["specgrad", "name", "data"]  # the base's key order


def test_several_bases_merge_in_order(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "_adam.yaml", "optimizer: {type: adam, lr: 0.1}\n")
    write(tmp_path, "_fast.yaml", "optimizer: {lr: 0.3}\ntrain: {steps: 5}\n")
    child = write(tmp_path, "child.yaml", "extends: [base.yaml, _adam.yaml, _fast.yaml]\n")
    data = compose(child).data
    assert data["optimizer"] == {"type": "adam", "lr": 0.3} and data["train"]["steps"] == 5


def test_include_a_fragment_with_local_overrides(tmp_path):
    write(tmp_path, "fragments/_data.yaml", "source: synthetic\nfunction: sin(3*x)\nn: 200\nnoise: 0.05\n")
    spec = write(
        tmp_path,
        "spec.yaml",
        BASE.replace(
            "data: {source: synthetic, function: sin(3*x), n: 20}", "data: {include: fragments/_data.yaml, n: 50}"
        ),
    )
    data = load_spec(spec).data
    assert data["data"] == {"source": "synthetic", "function": "sin(3*x)", "n": 50, "noise": 0.05}
    doc = compose(spec)
    assert doc.loc(("data", "noise")) == Location(str(tmp_path / "fragments/_data.yaml"), 4, 8)
    assert doc.loc(("data", "n")).history == (f"overrides {tmp_path / 'fragments/_data.yaml'}:3:4",)


def test_fragment_paths_are_relative_to_the_file_naming_them(tmp_path):
    write(tmp_path, "a/_opt.yaml", "include: ../b/_lr.yaml\ntype: sgd\n")
    write(tmp_path, "b/_lr.yaml", "lr: 0.25\n")
    write(tmp_path, "a/base.yaml", BASE.replace("optimizer: {type: sgd, lr: 0.001}", "optimizer: {include: _opt.yaml}"))
    child = write(tmp_path, "child.yaml", "extends: a/base.yaml\n")
    assert compose(child).data["optimizer"] == {"lr": 0.25, "type": "sgd"}


def test_references_keep_types_interpolate_and_follow_overrides(tmp_path):
    spec = write(
        tmp_path,
        "spec.yaml",
        BASE.replace("name: base", "name: poly-${vars.degree}")
        + textwrap.dedent("""\
        vars: {degree: 5, width: "${vars.degree}"}
        """).replace("train: {steps: 10", "train: {steps: 10"),
    )
    spec.write_text(
        spec.read_text().replace("shape: [6]", "shape: [6]").replace("powers(x, 5)", "powers(x, ${vars.degree})")
    )
    doc = compose(spec, ["vars.degree=5"])
    assert doc.data["name"] == "poly-5"
    assert doc.data["vars"]["width"] == 5  # a whole-string reference keeps the type
    assert doc.data["model"]["nodes"][0]["phi"] == "powers(x, 5)"
    loc = doc.loc(("vars", "width"))
    assert (loc.line, loc.col) == (15, 26)
    assert loc.history[0].startswith("value of ${vars.degree} from --set vars.degree=5:1:13")


def test_escaped_reference_stays_literal(tmp_path):
    spec = write(tmp_path, "spec.yaml", BASE.replace("name: base", "name: a$${b}"))
    assert compose(spec).data["name"] == "a${b}"


def test_the_resolved_spec_loads_back_to_itself(tmp_path):
    """config's output and a run's spec.yaml keep a literal ${ literal ($${) and text with characters YAML
    reads as line breaks (U+0085) as it was: trained again, a run's spec is the spec it was trained with."""
    import json

    import yaml

    from specgrad.spec.render import resolved_yaml, spec_yaml

    text = BASE.replace(
        "name: base", "name: base\n    vars: {p: _other, literal: 'd$${vars.p}.csv', nel: \"a\\x85b\", '${key}': 1}"
    )
    spec = write(tmp_path, "spec.yaml", text)
    doc = compose(spec)
    assert doc.data["vars"]["literal"] == "d${vars.p}.csv" and doc.data["vars"]["nel"] == "a\x85b"
    for written in (resolved_yaml(doc), resolved_yaml(doc, explain=True), spec_yaml(doc.data)):
        again = write(tmp_path, "again.yaml", written)
        assert compose(again).data == doc.data, written
    run = run_cli("train", spec, "--run-dir", tmp_path / "run", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "$${vars.p}" in (tmp_path / "run" / "spec.yaml").read_text()
    evaluated = run_cli("eval", tmp_path / "run", cwd=tmp_path)  # the checkpoint's hash is the spec.yaml's
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["step"] == 10, evaluated.stderr
    assert yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())["vars"]["nel"] == "a\x85b"


def test_extends_cycle_and_missing_files_are_located(tmp_path):
    a = write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    write(tmp_path, "b.yaml", "extends: [a.yaml]\n")
    assert messages(a) == [
        f"{a}: {tmp_path / 'b.yaml'}:1:11: error: '{tmp_path / 'a.yaml'}' extends or includes "
        f"itself: a.yaml -> b.yaml -> a.yaml (extended by {a}:1:10)"
    ]
    c = write(tmp_path, "c.yaml", BASE.replace("loss: sse", "loss: {include: nope.yaml}") + "extends: missing.yaml\n")
    assert messages(c) == [
        f"{c}:11:17: error: no such file '{tmp_path / 'nope.yaml'}'",
        f"{c}:15:10: error: no such file '{tmp_path / 'missing.yaml'}'",
    ]


def test_reference_errors_are_located(tmp_path):
    spec = write(
        tmp_path, "spec.yaml", BASE + "vars: {a: '${vars.b}', b: '${vars.a}', c: '${vars.wdth}', d: 'x${model}'}\n"
    )
    assert messages(spec) == [
        f"{spec}:15:11: error: reference cycle: ${{vars.a}} -> ${{vars.b}} -> ${{vars.a}}",
        f"{spec}:15:43: error: ${{vars.wdth}} refers to nothing: vars.wdth is not defined",
        f"{spec}:15:62: error: ${{model}} is a mapping; only a string that is nothing but the reference can take it",
    ]


def test_set_with_list_index_and_its_errors(tmp_path):
    spec = write(tmp_path, "spec.yaml", BASE)
    assert compose(spec, ["model.nodes.1.y_hat=phi @ k + 1"]).data["model"]["nodes"][1] == {"y_hat": "phi @ k + 1"}
    assert compose(spec, ["schedule=null"]).data.get("schedule") is None
    assert messages(spec, ["model.nodes.5.y=x", "optimizer.lr.x=1", "noequals"]) == [
        "--set model.nodes.5.y=x:1:1: error: cannot set 'model.nodes.5.y': index 5 is out of range for a list of 2",
        "--set noequals:1:1: error: expected --set KEY=VALUE, e.g. --set optimizer.lr=0.01",
        "--set optimizer.lr.x=1:1:1: error: cannot set 'optimizer.lr.x': is not a mapping or a list",
    ]


def test_child_of_poly_gets_the_error_at_its_own_line(tmp_path):
    """The issue's acceptance test: extend models/poly.yaml, set a bad value, see the child's line."""
    child = write(
        tmp_path,
        "child.yaml",
        f"""\
        extends: {MODELS / "poly.yaml"}
        name: child
        optimizer:
          lr: -0.5
        """,
    )
    assert messages(child) == [
        f"{child}:4:7: error: optimizer.lr must be > 0, got -0.5 (overrides {MODELS / 'poly.yaml'}:29:28)"
    ]
    # and through --set, the flag is the place, with both earlier places in the history
    assert messages(child, ["optimizer.lr=0"]) == [
        f"--set optimizer.lr=0:1:14: error: optimizer.lr must be > 0, got 0 "
        f"(overrides {child}:4:7, overrides {MODELS / 'poly.yaml'}:29:28)"
    ]


def test_a_shape_mismatch_names_where_each_shape_was_written(tmp_path):
    """A parameter's or an input's shape changed by a child or by --set: the mismatch cites that place, not
    the base's definition of the parameter."""
    child = write(
        tmp_path,
        "child.yaml",
        f"""\
        extends: {MODELS / "poly.yaml"}
        model:
          params: {{k: {{shape: [7]}}}}
        """,
    )
    poly = MODELS / "poly.yaml"
    (message,) = messages(child)
    assert f"('phi' is [B, 6], from {poly}:23:12; 'k' is [7], from {child}:3:23)" in message
    (message,) = messages(poly, ["model.params.k.shape=[7]"])
    assert message.endswith(
        f"('phi' is [B, 6], from {poly}:23:12; 'k' is [7], from --set model.params.k.shape=[7]:1:22)"
    )
    found = messages(poly, ["model.inputs.x=[2]", "model.nodes.1.y_hat=x * k"])  # an input's shape too
    assert any("'x' is [B, 2], from --set model.inputs.x=[2]:1:16" in message for message in found), found


def test_poly_adam_is_poly_with_differences():
    doc = compose(MODELS / "poly_adam.yaml")
    poly = compose(MODELS / "poly.yaml").data
    assert {k: v for k, v in doc.data.items() if k not in ("name", "optimizer", "schedule")} == {
        k: v for k, v in poly.items() if k not in ("name", "optimizer")
    }
    assert doc.data["optimizer"] == {"type": "adam", "lr": 0.1}
    assert doc.loc(("model", "nodes")).file.endswith("poly.yaml")


@pytest.mark.slow
def test_config_explain_names_each_origin(tmp_path):
    result = run_cli("config", MODELS / "poly_adam.yaml", "--explain", "--set", "train.steps=7")
    assert result.returncode == 0, result.stderr
    lines = {line.split(":")[0].strip(): line for line in result.stdout.splitlines()}
    assert lines["steps"].split("# ")[1] == f"--set train.steps=7:1:13 (overrides {MODELS / 'poly.yaml'}:32:10)"
    adam = next(line for line in result.stdout.splitlines() if line.startswith("  type: adam"))
    assert adam.split("# ")[1].startswith(f"{MODELS / 'poly_adam.yaml'}:15:19 (overrides ")
    plain = run_cli("config", MODELS / "poly_adam.yaml")
    import yaml

    assert yaml.safe_load(plain.stdout) == compose(MODELS / "poly_adam.yaml").data
    assert run_cli("config", tmp_path / "nope.yaml").returncode == 1


def test_unknown_format_version_is_a_clear_error(tmp_path):
    spec = write(tmp_path, "spec.yaml", BASE.replace("specgrad: 1", "specgrad: 2"))
    assert messages(spec) == [f"{spec}:1:11: error: unsupported spec format version 2; this specgrad reads version 1"]
    write(tmp_path, "old.yaml", BASE.replace("specgrad: 1", "specgrad: '1.0'"))
    child = write(tmp_path, "child.yaml", "extends: old.yaml\n")
    assert messages(child) == [
        f"{child}: {tmp_path / 'old.yaml'}:1:11: error: unsupported spec format version "
        f"'1.0'; this specgrad reads version 1 (extended by {child}:1:10)"
    ]


def test_set_values_are_typed_like_file_values(tmp_path):
    spec = write(tmp_path, "spec.yaml", BASE)
    data = compose(spec, ["vars.day=2024-01-01", "vars.n=0x10", "vars.list=[1, {a: b}]"]).data["vars"]
    assert data == {"day": "2024-01-01", "n": 16, "list": [1, {"a": "b"}]}
    assert messages(spec, ["vars.x=!!python/name:os.system"]) == [
        "--set vars.x=!!python/name:os.system:1:8: error: cannot parse value: tag '!!python/name:os.system' is "
        "not allowed in a spec (only strings, numbers, booleans, null, lists and mappings)"
    ]


def test_include_at_the_top_of_a_spec_points_to_extends(tmp_path):
    spec = write(tmp_path, "spec.yaml", "include: base.yaml\n")
    assert messages(spec) == [
        f"{spec}:1:1: error: the top level of a spec takes its bases with 'extends'; "
        "'include' is for the mappings inside it"
    ]

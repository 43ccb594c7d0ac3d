"""Composition of untrusted specs: the root, bounds while resolving, errors that name the spec being checked,
relative data paths, special files (issues 11.5, 11.6, 12.1, 12.2, 12.3, 12.7). The hostile corpus
(test_hostile.py) runs the same through the CLI; these pin the library's behaviour case by case."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import run_cli

from specgrad.base.diagnostics import SpecError, format_diagnostics
from specgrad.engine.ir import Graph
from specgrad.model.formula import FormulaError, build_formula
from specgrad.spec import check_spec, load_spec
from specgrad.spec.compose import compose, parse_path

BASE = """\
specgrad: 1
name: base
data: {source: synthetic, function: sin(3*x), n: 20}
model:
  inputs: {x: []}
  params: {k: {shape: [3], init: zeros}}
  nodes:
    - phi: powers(x, 2)
    - y_hat: phi @ k
  output: y_hat
loss: sse
optimizer: {type: sgd, lr: 1.0e-3, momentum: 0.9}
train: {steps: 3, batch_size: full}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def inside(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


# --- 11.5 -----------------------------------------------------------------------------------------------------------


def test_a_broken_base_is_reported_once_per_spec_it_breaks_naming_the_spec_and_chain(inside):
    write(inside, "_base.yaml", BASE.replace("momentum", "momentun"))
    write(inside, "exp/a.yaml", "extends: ../_base.yaml\nname: a\n")
    write(inside, "exp/b.yaml", "# b\nextends: ../_base.yaml\nname: b\n")
    (ok_a, a), (ok_b, b) = check_spec("exp/a.yaml"), check_spec("exp/b.yaml")
    assert not ok_a and not ok_b
    assert format_diagnostics(a, "text") == (
        "exp/a.yaml: _base.yaml:12:36: error: unknown key 'momentun' in optimizer; did you mean 'momentum'? "
        "(extended by exp/a.yaml:1:10)"
    )
    assert format_diagnostics(b, "text") == (
        "exp/b.yaml: _base.yaml:12:36: error: unknown key 'momentun' in optimizer; did you mean 'momentum'? "
        "(extended by exp/b.yaml:2:10)"
    )
    # github: the annotation lands on the extends line of the spec checked, the base's place in the message
    assert format_diagnostics(b, "github") == (
        "::error file=exp/b.yaml,line=2,col=10::_base.yaml:12:36: unknown key 'momentun' in optimizer; did you "
        "mean 'momentum'? (extended by exp/b.yaml:2:10)"
    )
    record = json.loads(format_diagnostics(a, "json"))
    assert record["spec"] == "exp/a.yaml" and (record["file"], record["line"], record["col"]) == ("_base.yaml", 12, 36)
    assert record["chain"] == [{"how": "extended by", "file": "exp/a.yaml", "line": 1, "col": 10}]


def test_a_child_changing_the_optimizer_gets_the_base_key_with_its_chain(inside):
    write(inside, "_base.yaml", BASE.replace(", momentum: 0.9", ""))
    write(inside, "c.yaml", "extends: _base.yaml\noptimizer: {type: adam}\n")
    ok, diags = check_spec("c.yaml")
    assert ok, diags
    write(inside, "_base.yaml", BASE)
    ok, diags = check_spec("c.yaml")
    assert [str(d) for d in diags] == [
        "c.yaml: _base.yaml:12:36: error: unknown key 'momentum' in optimizer (extended by c.yaml:1:10)"
    ]


def test_include_chain_is_named_innermost_first(inside):
    write(
        inside,
        "spec.yaml",
        BASE.replace("optimizer: {type: sgd, lr: 1.0e-3, momentum: 0.9}", "optimizer: {include: parts/_opt.yaml}"),
    )
    write(inside, "parts/_opt.yaml", "include: _inner.yaml\n")
    write(inside, "parts/_inner.yaml", "type: sgd\nlr: -1\n")
    ok, diags = check_spec("spec.yaml")
    assert not ok
    assert [str(d) for d in diags] == [
        (
            "spec.yaml: parts/_inner.yaml:2:5: error: optimizer.lr must be > 0, got -1 "
            "(included by parts/_opt.yaml:1:10, included by spec.yaml:12:22)"
        )
    ]


# --- 11.6 -----------------------------------------------------------------------------------------------------------


def csv_base(inside: Path, header: str) -> None:
    """data/d.csv with ``header`` over ten rows, and _base.yaml reading its columns a and b."""
    write(inside, "data/d.csv", f"{header}\n" + "".join(f"{i / 10},{i}\n" for i in range(10)))
    write(
        inside,
        "_base.yaml",
        BASE.replace(", momentum: 0.9", "").replace(
            "data: {source: synthetic, function: sin(3*x), n: 20}",
            "data: {source: csv, path: data/d.csv, columns: {x: a, y: b}}",
        ),
    )


def test_a_data_path_resolves_against_the_file_that_declares_it(inside):
    csv_base(inside, "a,b")
    child = write(inside, "exp/deep/child.yaml", "extends: ../../_base.yaml\nname: child\n")
    spec = load_spec(child)
    assert spec.data["data"]["path"] == os.path.join("..", "..", "data", "d.csv")
    from specgrad.data.prepare import prepare_data

    assert prepare_data(spec).splits["train"]["x"].shape == (10,)


def test_a_data_error_found_in_training_names_the_spec_and_chain(inside):
    """Errors found once the data is read (a missing column) read as validation's: the spec being trained,
    then the base's place, then how the spec reached the base."""
    csv_base(inside, "a,c")
    write(inside, "exp/child.yaml", "extends: ../_base.yaml\nname: child\n")
    result = run_cli("train", "exp/child.yaml", "--run-dir", inside / "run", cwd=inside)
    assert result.returncode == 1
    assert result.stderr.startswith("exp/child.yaml: _base.yaml:3:"), result.stderr
    assert "has no column 'b'" in result.stderr and "(extended by exp/child.yaml:1:10)" in result.stderr


def test_validate_checks_data_files_exist_and_are_regular(inside):
    spec = write(
        inside,
        "spec.yaml",
        BASE.replace(", momentum: 0.9", "").replace(
            "data: {source: synthetic, function: sin(3*x), n: 20}",
            "data: {source: csv, path: folder, columns: {x: a, y: b}}",
        ),
    )
    (inside / "folder").mkdir()
    assert [d.message for d in check_spec(spec)[1]] == ["data: data file 'folder' is a directory, not a regular file"]
    (inside / "folder").rmdir()
    assert "not found" in check_spec(spec)[1][0].message


# --- 12.1 -----------------------------------------------------------------------------------------------------------


def test_a_file_outside_the_root_is_refused_by_name_without_reading_it(inside, tmp_path, monkeypatch):
    secret = write(tmp_path, "secret.env", "TOKEN=hunter2\n")
    spec = write(inside, "spec.yaml", BASE.replace("loss: sse", f"loss: {{include: {secret}}}"))
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: (opened.append(str(path)), real_open(path, *a, **k))[1])
    with pytest.raises(SpecError) as e:
        compose(spec)
    assert str(secret) not in opened
    assert "hunter2" not in str(e.value) and "outside the folders a spec may read" in str(e.value)
    link = inside / "link.yaml"
    link.symlink_to(secret)  # a symlink inside the root is judged by where it leads
    with pytest.raises(SpecError, match="outside the folders"):
        compose(write(inside, "spec.yaml", BASE.replace("loss: sse", "loss: {include: link.yaml}")))
    # --root widens it: the file is read, and its content is quoted only as a short excerpt
    write(tmp_path, "secret.env", "TOKEN=" + "x" * 100 + "hunter2\n")
    with pytest.raises(SpecError) as e:
        load_spec(inside / "spec.yaml", roots=[tmp_path])
    assert "hunter2" not in str(e.value) and "TOKEN=" in str(e.value)


# --- 12.2 and 12.3 --------------------------------------------------------------------------------------------------


def test_a_sibling_folder_named_like_the_root_is_outside_it(inside):
    """/repo-secrets is not inside /repo: the root check compares whole path parts, not prefixes."""
    sibling = inside.parent / (inside.name + "-secrets")
    sibling.mkdir()
    (sibling / "_base.yaml").write_text(BASE)
    (sibling / "d.csv").write_text("a,b\n1,2\n")
    child = write(inside, "child.yaml", f"extends: {sibling / '_base.yaml'}\nname: child\n")
    ok, diags = check_spec(child)
    assert not ok and "outside the folders a spec may read" in diags[0].message
    data = BASE.replace(
        "data: {source: synthetic, function: sin(3*x), n: 20}",
        f"data: {{source: csv, path: {sibling / 'd.csv'}, columns: {{x: a, y: b}}}}",
    )
    ok, diags = check_spec(write(inside, "data.yaml", data))
    assert not ok and any("outside the folders a spec may read" in d.message for d in diags)


def test_doubling_references_are_refused_while_resolving_at_the_reference(inside):
    lines = ["vars:", "  a0: xxxxxxxxxxxxxxxx"] + [
        f"  a{i}: '${{vars.a{i - 1}}}${{vars.a{i - 1}}}'" for i in range(1, 41)
    ]
    spec = write(inside, "spec.yaml", BASE + "\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(
        SpecError,
        match=r"spec.yaml:\d+:\d+: error: spec too large: references write more than "
        r"\d+ characters of text \(at \$\{vars.a\d+\}\)",
    ):
        compose(spec)
    assert time.perf_counter() - start < 2


def test_key_paths_take_ascii_indices_only_and_are_bounded():
    assert parse_path("model.nodes.-1.phi") == ("model", "nodes", -1, "phi")
    assert parse_path("a.\u00b2") == ("a", "\u00b2")  # '²'.isdigit() is true, int('²') fails
    assert parse_path("model.nodes.--1.phi") == ("model", "nodes", "--1", "phi")
    with pytest.raises(Exception, match="at most 100 parts"):
        parse_path(".".join(["a"] * 490))


def formula(text):
    g = Graph()
    return build_formula(text, g, {"x": g.input("x", (3,), "float64")})


@pytest.mark.parametrize(
    "text, message",
    [
        ("9 ** 9 ** 9 ** 9 * x", "overflows"),
        ("x * 1" + "0" * 400, "integer too large"),
        ("-" * 5000 + "x", "nested deeper"),
        ("+".join(["x"] * 480), "nested deeper"),
        ("x * 1e999", "finite"),
    ],
)
def test_formulas_are_bounded_and_constants_checked(text, message):
    with pytest.raises(FormulaError, match=message):
        formula(text)


def test_constant_subexpressions_are_folded_exactly():
    assert formula("2 ** 3").value == 8 and isinstance(formula("2 ** 3").value, int)
    scaled = formula("x * (2 ** 62 * 4)")  # past int64: computed as float64, not wrapped around
    assert scaled.inputs[1].value == float(2**64) and isinstance(scaled.inputs[1].value, float)
    assert formula("x * 2 ** -1").inputs[1].value == 0.5


# --- 12.7 -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_special_files_as_include_are_refused_without_blocking(inside, kind):
    target = inside / "special.yaml"
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    spec = write(inside, "spec.yaml", BASE.replace("loss: sse", "loss: {include: special.yaml}"))
    with pytest.raises(SpecError, match="FIFO" if kind == "fifo" else "directory"):
        compose(spec)
    with pytest.raises(SpecError, match="FIFO" if kind == "fifo" else "directory"):
        compose(target)

"""Tests for specgrad.spec.load (located YAML loading) and specgrad.base.diagnostics."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specgrad.base.diagnostics import (
    Diagnostic,
    Location,
    SpecError,
    did_you_mean,
    format_diagnostics,
)
from specgrad.spec import load
from specgrad.spec.load import MAX_BYTES, Document, load_file, load_string

# --- both parser back ends ---------------------------------------------------

_PURE_LOADER: list[type] = []


def _pure_loader_class() -> type:
    """The loader built when PyYAML has no libyaml, made by hiding yaml._yaml."""
    if not _PURE_LOADER:
        saved = sys.modules.get("yaml._yaml")
        sys.modules["yaml._yaml"] = None  # makes `from yaml._yaml import ...` fail
        try:
            _PURE_LOADER.append(load._make_loader_class())
        finally:
            if saved is None:
                del sys.modules["yaml._yaml"]
            else:
                sys.modules["yaml._yaml"] = saved
    return _PURE_LOADER[0]


@pytest.fixture(autouse=True, params=["default", "pure-python"])
def backend(request, monkeypatch):
    """Run every test with the loader in use and with the pure-Python fallback."""
    if request.param == "pure-python":
        monkeypatch.setattr(load, "_Loader", _pure_loader_class())
    return request.param


def test_pure_python_backend_has_no_libyaml(backend):
    names = [cls.__name__ for cls in load._Loader.__mro__]
    if backend == "pure-python":
        assert "CParser" not in names and "Scanner" in names
    elif yaml.__with_libyaml__:
        assert "CParser" in names


def error_of(text: str, file: str = "spec.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        load_string(text, file)
    return info.value


def only(err: SpecError) -> Diagnostic:
    assert len(err.diagnostics) == 1
    return err.diagnostics[0]


# --- values -------------------------------------------------------------------

SPEC = """\
# demo spec
name: mlp
seed: 42
defaults: &dense
  init: he_normal
  bias: zeros
data:
  batch_size: 64
  shuffle: true
  split: {train: 0.8, val: 0.2}
model:
  inputs: [x]
  nodes:
    - h: {op: dense, in: x, units: 16}
    - y_hat: {op: softmax, in: h}
  layer:
    <<: *dense
    units: 32
optimizer:
  kind: adam
  lr: 0.001
  betas: [0.9, 0.999]
  eps: 1.0e-8
  clip: null
  schedule: ~
loss: "cross_entropy"
notes: |
  two
  lines
tags: ['a', "b", c]
big: 1_000
neg: -3
inf: .inf
hexa: 0x1F
quoted_int: '7'
"""


def test_values_equal_safe_load_including_key_order():
    doc = load_string(SPEC, "spec.yaml")
    expected = yaml.safe_load(SPEC)
    assert doc.data == expected
    assert repr(doc.data) == repr(expected)  # same insertion order everywhere
    assert doc.file == "spec.yaml"


def test_scalar_types():
    data = load_string(SPEC).data
    assert data["seed"] == 42 and type(data["seed"]) is int
    assert data["optimizer"]["lr"] == 0.001 and type(data["optimizer"]["lr"]) is float
    assert data["data"]["shuffle"] is True
    assert data["optimizer"]["clip"] is None and data["optimizer"]["schedule"] is None
    assert data["notes"] == "two\nlines\n"
    assert data["big"] == 1000 and data["hexa"] == 31 and data["neg"] == -3
    assert math.isinf(data["inf"])
    assert data["quoted_int"] == "7"
    assert data["model"]["layer"] == {"init": "he_normal", "bias": "zeros", "units": 32}


def test_explicit_scalar_tags_use_safe_constructor():
    data = load_string("a: !!str 1\nb: !!int '12'\nc: !!float '2'\nd: !!bool 'yes'\ne: ! 3\n").data
    assert data == {"a": "1", "b": 12, "c": 2.0, "d": True, "e": 3}
    assert data == yaml.safe_load("a: !!str 1\nb: !!int '12'\nc: !!float '2'\nd: !!bool 'yes'\ne: ! 3\n")


def test_timestamps_stay_strings():
    data = load_string("when: 2024-01-02\nat: 2024-01-02 10:00:00\nx: !!timestamp 2020-01-01\n").data
    assert data == {"when": "2024-01-02", "at": "2024-01-02 10:00:00", "x": "2020-01-01"}


def test_equals_sign_key_becomes_string_like_safe_load():
    assert load_string("=: 1\n").data == {"=": 1} == yaml.safe_load("=: 1\n")


def test_alias_expansions_are_independent_copies():
    data = load_string("base: &b {lr: 0.1, betas: [1, 2]}\nopt: *b\n").data
    assert data["opt"] == data["base"]
    data["opt"]["betas"].append(3)
    assert data["base"]["betas"] == [1, 2]


def test_aliased_scalar_key():
    assert load_string("x: &k y\n*k : 2\n").data == {"x": "y", "y": 2}


# --- merge keys -----------------------------------------------------------------


def test_merge_explicit_keys_override_merged_ones():
    text = "base: &b {a: 1, b: 2}\nchild:\n  b: 3\n  <<: *b\n  c: 4\n"
    data = load_string(text).data
    assert data["child"] == {"a": 1, "b": 3, "c": 4}
    assert repr(data) == repr(yaml.safe_load(text))


def test_merge_list_earlier_mappings_win():
    text = "x: &x {k: x, only_x: 1}\ny: &y {k: y, only_y: 2}\nz:\n  <<: [*x, *y]\n"
    data = load_string(text).data
    assert data["z"] == {"k": "x", "only_x": 1, "only_y": 2}
    assert data == yaml.safe_load(text)  # key order of merged keys differs between PyYAML releases


def test_nested_merges():
    text = "a: &a {p: 1}\nb: &b {<<: *a, q: 2}\nc: {<<: *b, r: 3}\n"
    assert load_string(text).data["c"] == {"p": 1, "q": 2, "r": 3}


def test_overridden_merged_value_does_not_leave_stale_locations():
    doc = load_string("base: &b {opt: {lr: 1, mom: 2}}\nchild:\n  <<: *b\n  opt: {lr: 3}\n")
    assert doc.data["child"] == {"opt": {"lr": 3}}
    assert ("child", "opt", "mom") not in doc.locations


@pytest.mark.parametrize(
    "text, message, line, col",
    [
        ("a:\n  <<: 3\n", "the merge key '<<' needs a mapping or a list of mappings, got the scalar '3'", 2, 7),
        ("a:\n  <<: [{x: 1}, [2]]\n", "the merge key '<<' needs a mapping or a list of mappings, got a list", 2, 16),
        ("a: <<\n", "'<<' is only allowed as a key; put it in quotes to use it as a string", 1, 4),
        ("a: =\n", "'=' is only allowed as a key; put it in quotes to use it as a string", 1, 4),
    ],
)
def test_merge_errors(text, message, line, col):
    diag = only(error_of(text))
    assert diag.message == message
    assert diag.location == Location("spec.yaml", line, col)


# --- locations ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, value_at, key_at",
    [
        ((), (2, 1), (2, 1)),
        (("name",), (2, 7), (2, 1)),
        (("optimizer",), (20, 3), (19, 1)),
        (("optimizer", "lr"), (21, 7), (21, 3)),
        (("optimizer", "betas", 1), (22, 16), (22, 16)),
        (("model", "nodes", 1), (15, 7), (15, 7)),
        (("model", "nodes", 1, "y_hat"), (15, 14), (15, 7)),
        (("model", "nodes", 1, "y_hat", "op"), (15, 19), (15, 15)),
        (("data", "split", "val"), (10, 28), (10, 23)),
        (("tags", 0), (30, 8), (30, 8)),
        (("tags", 1), (30, 13), (30, 13)),
        (("tags", 2), (30, 18), (30, 18)),
        (("notes",), (27, 8), (27, 1)),
        # merged keys point at their definition in the anchored mapping
        (("model", "layer", "init"), (5, 9), (5, 3)),
        (("model", "layer", "units"), (18, 12), (18, 5)),
    ],
)
def test_exact_locations(path, value_at, key_at):
    doc = load_string(SPEC, "spec.yaml")
    assert doc.loc(path) == Location("spec.yaml", *value_at)
    assert doc.key_loc(path) == Location("spec.yaml", *key_at)
    assert doc.locations[path] == Location("spec.yaml", *value_at)


def test_loc_of_missing_path_falls_back_to_nearest_ancestor():
    doc = load_string(SPEC, "spec.yaml")
    assert doc.loc(("optimizer", "nope", "deeper")) == Location("spec.yaml", 20, 3)
    assert doc.key_loc(("optimizer", "nope")) == Location("spec.yaml", 20, 3)
    assert doc.loc(["optimizer", "lr"]) == Location("spec.yaml", 21, 7)  # lists work too


def test_every_value_and_key_is_located():
    doc = load_string(SPEC)

    def walk(value, path):
        assert path in doc.locations
        if isinstance(value, dict):
            for key, item in value.items():
                assert path + (key,) in doc.key_locations
                walk(item, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, path + (i,))

    walk(doc.data, ())


def test_alias_is_located_where_it_is_used_and_its_contents_where_defined():
    doc = load_string("base: &b\n  lr: 0.1\nopt: *b\n", "f.yaml")
    assert doc.loc(("opt",)) == Location("f.yaml", 3, 6)
    assert doc.loc(("opt", "lr")) == Location("f.yaml", 2, 7)
    assert doc.key_loc(("opt", "lr")) == Location("f.yaml", 2, 3)


def test_crlf_and_bom_do_not_shift_columns():
    doc = load_string("\ufeffa: 1\r\nb:\r\n  c: 2\r\n", "f.yaml")
    assert doc.data == {"a": 1, "b": {"c": 2}}
    assert doc.loc(("a",)) == Location("f.yaml", 1, 4)
    assert doc.loc(("b", "c")) == Location("f.yaml", 3, 6)


# --- errors from load_string ------------------------------------------------------


@pytest.mark.parametrize(
    "text, message, line, col",
    [
        ("", "a spec must be a mapping of keys; the document is empty", 1, 1),
        ("# only a comment\n", "a spec must be a mapping of keys; the document is empty", 1, 1),
        ("\n\n- 1\n- 2\n", "a spec must be a mapping of keys; got a list", 3, 1),
        ("just text\n", "a spec must be a mapping of keys; got the scalar 'just text'", 1, 1),
        ("~\n", "a spec must be a mapping of keys; got null", 1, 1),
        ("a: 1\n---\nb: 2\n", "a spec file must hold exactly one YAML document; found another", 2, 1),
        ("optimizer:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr'; first defined at spec.yaml:2:3", 3, 3),
        ("a: {b: 1, b: 2}\n", "duplicate key 'b'; first defined at spec.yaml:1:5", 1, 11),
        ("1: x\n", "keys must be strings; got an integer '1' (put it in quotes to use it as a string)", 1, 1),
        ("on: push\n", "keys must be strings; got a boolean 'on' (put it in quotes to use it as a string)", 1, 1),
        ("a:\n  ~: 1\n", "keys must be strings; got null '~' (put it in quotes to use it as a string)", 2, 3),
        ("? [a, b]\n: 1\n", "keys must be strings; got a list", 1, 3),
        ("? {a: 1}\n: 1\n", "keys must be strings; got a mapping", 1, 3),
        ("a: *nope\n", "invalid YAML: found undefined alias 'nope'", 1, 4),
        (
            "a: &x 1\nb: &x 2\n",
            "invalid YAML: found duplicate anchor 'x'; first occurrence at spec.yaml:1:4: second occurrence",
            2,
            4,
        ),
        ("a: 1\nb: \x07\n", "character U+0007 is not allowed in YAML", 2, 4),
        ("a: \ud800\n", "character U+D800 is not allowed in YAML", 1, 4),
        ("a: !!int x\n", "invalid !!int value 'x'", 1, 4),
        ("a: !!bool maybe\n", "invalid !!bool value 'maybe'", 1, 4),
        ("a: !!timestamp soon\n", "invalid !!timestamp value 'soon'", 1, 4),
        ("a: &a [1, *a]\n", "an alias refers to a value that contains it (a cycle)", 1, 11),
        ("a: &a {<<: *a}\n", "an alias refers to a value that contains it (a cycle)", 1, 12),
    ],
)
def test_load_string_errors(text, message, line, col):
    err = error_of(text)
    diag = only(err)
    assert diag.message == message
    assert diag.location == Location("spec.yaml", line, col)
    assert str(err) == f"spec.yaml:{line}:{col}: error: {message}"


@pytest.mark.parametrize(
    "text, line, col, fragment",
    [
        ("a: b: c\n", 1, 5, "mapping values are not allowed"),
        ("a: [1, 2\n", 2, 1, "while parsing a flow sequence at spec.yaml:1:4: "),
        ("a: 'x\n", 2, 1, "while scanning a quoted scalar at spec.yaml:1:4: found unexpected end of stream"),
        ("\tb: 1\n", 1, 1, "cannot start any token"),
    ],
)
def test_yaml_syntax_errors_use_problem_mark(text, line, col, fragment):
    # libyaml and PyYAML word these slightly differently; location and gist agree.
    diag = only(error_of(text))
    assert diag.message.startswith("invalid YAML: ")
    assert fragment in diag.message
    assert diag.location == Location("spec.yaml", line, col)


@pytest.mark.parametrize(
    "text, tag, col",
    [
        ("run: !!python/object/apply:os.system ['echo hi']\n", "!!python/object/apply:os.system", 6),
        ("run: !!python/object:os.system {}\n", "!!python/object:os.system", 6),
        ("run: !!python/name:os.system ''\n", "!!python/name:os.system", 6),
        ("run: !!python/tuple [1, 2]\n", "!!python/tuple", 6),
        ("run: !custom 1\n", "!custom", 6),
        ("run: !!binary aGk=\n", "!!binary", 6),
        ("run: !!set {a, b}\n", "!!set", 6),
        ("run: !!omap [{a: 1}]\n", "!!omap", 6),
        ("run: !!map [1]\n", "!!map", 6),
        ("!!python/name:os.system x: 1\n", "!!python/name:os.system", 1),
    ],
)
def test_unsafe_and_unsupported_tags_are_refused(text, tag, col, monkeypatch):
    def boom(*args):  # pragma: no cover - must never run
        raise AssertionError("os.system was called")

    monkeypatch.setattr(os, "system", boom)
    diag = only(error_of(text))
    assert diag.message == (
        f"tag {tag!r} is not allowed in a spec (only strings, numbers, booleans, null, lists and mappings)"
    )
    assert diag.location == Location("spec.yaml", 1, col)


def test_python_tags_refused_even_inside_an_overridden_merge_value():
    text = "base: &b {x: !!python/name:os.system ''}\nc:\n  <<: *b\n  x: 1\n"
    assert "!!python/name:os.system" in only(error_of(text)).message
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)  # the same text safe_load refuses


def test_billion_laughs_is_refused_quickly():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    text = "\n".join(lines) + "\n"
    assert len(lines) == 9
    start = time.perf_counter()
    diag = only(error_of(text))
    assert time.perf_counter() - start < 1.0
    assert diag.message == "spec too large: more than 100000 values (alias expansion?)"
    # reported at the alias being expanded when the limit was crossed (8th *d in e)
    assert diag.location == Location("spec.yaml", 5, 29)


def test_merge_key_bomb_is_refused_quickly():
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
    for level in range(1, 9):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} {{<<: [{refs}]}}")
    start = time.perf_counter()
    diag = only(error_of("\n".join(lines) + "\n"))
    assert time.perf_counter() - start < 1.0
    assert diag.message == "spec too large: more than 100000 values (alias expansion?)"


@pytest.mark.slow
def test_many_values_without_aliases_under_the_limit_load(backend):
    if backend != "default":
        pytest.skip("counting is backend-independent; parsing 200k values in pure Python is slow")
    text = "xs: [" + ", ".join(["1"] * 99_990) + "]\n"
    assert len(load_string(text).data["xs"]) == 99_990
    too_many = "xs: [" + ", ".join(["1"] * 100_000) + "]\n"
    assert only(error_of(too_many)).message.startswith("spec too large: more than 100000 values")


@pytest.mark.parametrize("depth", [150, 100_000])
def test_deep_flow_nesting_is_an_error_not_recursion_error(depth):
    diag = only(error_of("a: " + "[" * depth + "]" * depth + "\n"))
    if diag.message.startswith("invalid YAML"):  # libyaml >= 0.2.6 (PyYAML 6.0.4) stops deep flows itself
        assert "maximum nesting depth" in diag.message
        return
    assert diag.message == "nesting deeper than 100 levels"
    # the root mapping is level 1, so the 100th '[' (column 4 + 99) is level 101
    assert diag.location == Location("spec.yaml", 1, 103)


def test_nesting_at_the_limit_loads():
    text = "a: " + "[" * 98 + "1" + "]" * 98 + "\n"  # root 1 + 98 lists + scalar = 100
    value = load_string(text).data["a"]
    for _ in range(98):
        value = value[0]
    assert value == 1


def test_deep_block_nesting_is_an_error():
    text = "".join("  " * i + "k:\n" for i in range(150)) + "  " * 150 + "v: 1\n"
    diag = only(error_of(text))
    assert diag.message == "nesting deeper than 100 levels"
    assert diag.location.line == 100


def test_nesting_through_aliases_is_limited_too():
    inner = "[" * 60 + "1" + "]" * 60
    text = f"a: &a {inner}\nb: {'[' * 60}*a{']' * 60}\n"
    assert only(error_of(text)).message == "nesting deeper than 100 levels"


def test_text_over_the_size_limit_is_refused():
    diag = only(error_of("a: " + "x" * MAX_BYTES))
    assert diag.message == f"spec too large: more than {MAX_BYTES} characters"
    assert diag.location == Location("spec.yaml", 1, 1)


# --- load_file -------------------------------------------------------------------


def test_load_file_reads_utf8_and_records_the_path(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: héllo\nlr: 0.1\n", encoding="utf-8")
    doc = load_file(path)  # PathLike accepted
    assert doc.data == {"name": "héllo", "lr": 0.1}
    assert doc.file == str(path)
    assert doc.loc(("lr",)) == Location(str(path), 2, 5)
    assert load_file(str(path)).data == doc.data


def test_load_file_missing(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(info.value) == f"{path}:1:1: error: no such file"


def test_load_file_directory(tmp_path):
    with pytest.raises(SpecError) as info:
        load_file(tmp_path)
    assert only(info.value).location == Location(str(tmp_path), 1, 1)
    assert only(info.value).message in ("is a directory, not a spec file", "permission denied")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read files without permission")
def test_load_file_unreadable(tmp_path):
    path = tmp_path / "secret.yaml"
    path.write_text("a: 1\n")
    path.chmod(0)
    try:
        with pytest.raises(SpecError) as info:
            load_file(path)
    finally:
        path.chmod(0o600)
    assert str(info.value) == f"{path}:1:1: error: permission denied"


def test_load_file_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("a: 1\nname: h\xe9llo\n".encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(info.value) == f"{path}:2:8: error: file is not valid UTF-8 (byte 0xe9)"


def test_load_file_too_large(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * MAX_BYTES)
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(info.value) == f"{path}:1:1: error: spec too large: more than {MAX_BYTES} bytes"


def test_load_file_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("a: 1\na: 2\n")
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(info.value) == f"{path}:2:1: error: duplicate key 'a'; first defined at {path}:1:1"


# --- speed and imports ------------------------------------------------------------

SIXTY_LINES = SPEC + "".join(f"extra_{i}: {{units: {i}, act: relu}}\n" for i in range(60 - SPEC.count("\n")))


def test_a_sixty_line_spec_loads_with_every_value_located(backend):
    """(How fast it loads is measured by benchmarks/startup.py, with the rest of a command's start-up.)"""
    assert SIXTY_LINES.count("\n") == 60
    doc = load_string(SIXTY_LINES)
    assert doc.data and all(loc.line >= 1 for loc in doc.locations.values())
    assert max(loc.line for loc in doc.locations.values()) <= 60


def test_import_is_light(backend):
    if backend != "default":
        pytest.skip("one run is enough")
    code = "import sys, specgrad.spec.load; print('jsonschema' in sys.modules)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


# --- property tests ---------------------------------------------------------------

_YAMLISH = st.lists(
    st.sampled_from(
        list(" \n-:[]{},&*!<>|#'\"abcx01.=~?%@`\t\r\\")
        + [
            "<<",
            "&a",
            "*a",
            "&b",
            "*b",
            "!!int",
            "!!str",
            "!!python/name:os.system",
            "!x",
            "---",
            "...",
            "\ufeff",
            "\x85",
            "\u2028",
            "é",
            "\x00",
            "  ",
            "\n  ",
            "\n- ",
            "a: ",
            "2020-01-01",
        ]
    ),
    max_size=40,
).map("".join)

_ANY_TEXT = (
    _YAMLISH
    | st.text()
    | st.binary().map(lambda b: b.decode("utf-8", "surrogateescape"))
    | st.binary().map(lambda b: b.decode("latin-1"))
)

_PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_PROPERTY
@given(_ANY_TEXT)
def test_load_string_returns_document_or_raises_spec_error(text):
    try:
        doc = load_string(text, "fuzz.yaml")
    except SpecError as err:
        assert err.diagnostics
        for diag in err.diagnostics:
            assert diag.location is not None and diag.location.file == "fuzz.yaml"
            assert diag.location.line >= 1 and diag.location.col >= 1
    else:
        assert isinstance(doc, Document) and isinstance(doc.data, dict)


_SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_DATA = st.recursive(
    _SCALAR, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4), max_leaves=20
)


@pytest.mark.slow
@_PROPERTY
@given(data=st.dictionaries(st.text(), _DATA, max_size=5), flow=st.sampled_from([None, True, False]))
def test_dumped_data_loads_like_safe_load(backend, data, flow):
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)
    # Compare with the safe loader on the same parser: PyYAML's own dump/load
    # round trip is not exact for a few characters such as U+0085.
    uses_libyaml = backend == "default" and yaml.__with_libyaml__
    reference = yaml.load(text, Loader=yaml.CSafeLoader if uses_libyaml else yaml.SafeLoader)
    loaded = load_string(text).data
    assert loaded == reference
    assert repr(loaded) == repr(reference)  # same order, same types


# --- errors.py ------------------------------------------------------------------------


def test_diagnostic_and_location_str():
    loc = Location("spec.yaml", 3, 5)
    assert str(loc) == "spec.yaml:3:5"
    assert str(Diagnostic("bad lr", loc)) == "spec.yaml:3:5: error: bad lr"
    assert str(Diagnostic("odd", loc, "warning")) == "spec.yaml:3:5: warning: odd"
    assert str(Diagnostic("no file")) == "error: no file"
    with pytest.raises(ValueError):
        Diagnostic("x", severity="fatal")


def test_spec_error_sorts_and_formats():
    err = SpecError(
        [
            Diagnostic("third", Location("b.yaml", 1, 1)),
            Diagnostic("second", Location("a.yaml", 2, 1)),
            Diagnostic("first", Location("a.yaml", 1, 9)),
            Diagnostic("general"),
        ]
    )
    assert [d.message for d in err.diagnostics] == ["general", "first", "second", "third"]
    assert str(err) == ("error: general\na.yaml:1:9: error: first\na.yaml:2:1: error: second\nb.yaml:1:1: error: third")


def test_spec_error_at_and_single_diagnostic():
    err = SpecError.at(Location("f", 1, 2), "boom")
    assert err.diagnostics == [Diagnostic("boom", Location("f", 1, 2))]
    assert str(SpecError(Diagnostic("x"))) == "error: x"
    assert str(SpecError.at(None, "y")) == "error: y"
    with pytest.raises(ValueError):
        SpecError([])


def test_spec_error_pickles():
    err = SpecError.at(Location("f", 1, 2), "boom")
    again = pickle.loads(pickle.dumps(err))
    assert again.diagnostics == err.diagnostics and str(again) == str(err)


DIAGS = [
    Diagnostic("unknown key 'lrr'; did you mean 'lr'?", Location("specs/a,b.yaml", 3, 5)),
    Diagnostic("100% sure:\nline two\r", Location("c:/x.yaml", 1, 1), "warning"),
    Diagnostic("no place"),
]


def test_format_text():
    assert format_diagnostics(DIAGS, "text") == (
        "specs/a,b.yaml:3:5: error: unknown key 'lrr'; did you mean 'lr'?\n"
        "c:/x.yaml:1:1: warning: 100% sure:\nline two\r\n"
        "error: no place"
    )
    assert format_diagnostics([], "text") == ""


def test_format_json():
    lines = format_diagnostics(DIAGS, "json").split("\n")
    assert [json.loads(line) for line in lines] == [
        {
            "file": "specs/a,b.yaml",
            "line": 3,
            "col": 5,
            "severity": "error",
            "message": "unknown key 'lrr'; did you mean 'lr'?",
        },
        {"file": "c:/x.yaml", "line": 1, "col": 1, "severity": "warning", "message": "100% sure:\nline two\r"},
        {"file": None, "line": None, "col": None, "severity": "error", "message": "no place"},
    ]
    assert list(json.loads(lines[0])) == ["file", "line", "col", "severity", "message"]


def test_format_github_escapes():
    assert format_diagnostics(DIAGS, "github").split("\n") == [
        "::error file=specs/a%2Cb.yaml,line=3,col=5::unknown key 'lrr'; did you mean 'lr'?",
        "::warning file=c%3A/x.yaml,line=1,col=1::100%25 sure:%0Aline two%0D",
        "::error::no place",
    ]


def test_format_unknown():
    with pytest.raises(ValueError, match="did you mean 'json'"):
        format_diagnostics(DIAGS, "jsno")


def test_did_you_mean():
    assert did_you_mean("lrr", ["lr", "momentum", "betas"]) == "; did you mean 'lr'?"
    assert did_you_mean("momentun", {"lr": 1, "momentum": 2}) == "; did you mean 'momentum'?"
    assert did_you_mean("zzz", ["lr", "momentum"]) == ""
    assert did_you_mean("x", []) == ""

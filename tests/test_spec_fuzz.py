"""Never a traceback: mutated specs give a valid spec or located errors with exit 1, in bounded time and
memory. Mutations: deleted keys, swapped types, random bytes, deep nesting, aliases, composition."""

import time
import tracemalloc

import pytest
import yaml
from conftest import MODELS, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from specgrad.cli import app
from specgrad.spec import check_spec

VALID = [yaml.safe_load((MODELS / name).read_text()) for name in ("poly.yaml",)]
VALID.append({**VALID[0], "vars": {"n": 5}, "train": {"steps": "${vars.n}", "batch_size": 8, "clip": {"max_norm": 1}}})

ANY_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**6), 10**6),
        st.floats(allow_nan=True),
        st.text(max_size=12),
        st.sampled_from(["${vars.n}", "${nope}", "x @ k", "sum(", "B", "full"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


@st.composite
def mutated_data(draw):
    data = yaml.safe_load(yaml.safe_dump(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(data))[1:]))
        parent = data
        for key in where[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            del parent[where[-1]]  # a deleted key or list item
        else:
            parent[where[-1]] = draw(ANY_VALUE)  # a swapped type or value
        if not isinstance(data, dict):
            break
    return data


def text_mutation(text: str, draw) -> str | bytes:
    kind = draw(st.sampled_from(["bytes", "nest", "alias", "extends", "none"]))
    if kind == "bytes":  # raw bytes: control characters, bad UTF-8
        raw = text.encode()
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if kind == "nest":
        depth = draw(st.integers(50, 400))
        return text + "deep: " + "[" * depth + "]" * depth + "\n"
    if kind == "alias":
        return "anchor: &a {lr: 1}\n" + text.replace("optimizer:", "optimizer: *a\nold_optimizer:", 1)
    if kind == "extends":
        return f"extends: {draw(st.sampled_from(['poly.yaml', 'missing.yaml', 'self.yaml']))}\n" + text
    return text


def check_one(folder, text: str | bytes):
    spec = folder / "self.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    (folder / "poly.yaml").write_text((MODELS / "poly.yaml").read_text())
    tracemalloc.start()
    start = time.perf_counter()
    try:
        ok, diags = check_spec(spec)  # raises nothing but SpecError, which it catches
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - start < 5 and peak < 200 * 2**20
    if not ok:
        errors = [d for d in diags if d.severity == "error"]
        assert errors and all(d.location is not None and d.location.line >= 1 for d in errors)
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == (0 if ok else 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_specs_give_located_errors_never_a_traceback(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    text = yaml.safe_dump(data.draw(mutated_data()), sort_keys=False)
    check_one(folder, text_mutation(text, data.draw))


def test_alias_bomb_is_refused_within_a_second():
    start = time.perf_counter()
    ok, diags = check_spec(ROOT / "tests" / "data" / "bad_specs" / "alias_bomb.yaml")
    assert time.perf_counter() - start < 1.0
    assert not ok and diags[0].message.startswith("spec too large")


def test_include_diamond_is_refused_within_a_second(tmp_path):
    """Each fragment includes the one before twice: 2^30 copies unless composition counts values."""
    (tmp_path / "_f0.yaml").write_text("a: " + str(list(range(100))) + "\n")
    for i in range(1, 31):
        (tmp_path / f"_f{i}.yaml").write_text(f"x: {{include: _f{i - 1}.yaml}}\ny: {{include: _f{i - 1}.yaml}}\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text((MODELS / "poly.yaml").read_text() + "vars: {include: _f30.yaml}\n")
    start = time.perf_counter()
    ok, diags = check_spec(spec)
    assert time.perf_counter() - start < 1.0
    assert not ok and "spec too large" in diags[0].message

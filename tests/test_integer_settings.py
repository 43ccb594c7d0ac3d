"""An integer setting takes an integer. YAML tells 2 from 2.0, JSON Schema does not (it calls 2.0 an
integer), and a 2.0 used as a seed, a size, a count or an axis fails far from the spec. Every integer of the
schema, every integer argument of a layer and every integer attribute of an op refuses a whole float with
a located error at validate."""

import numpy as np
import pytest
from conftest import MODELS

from specgrad.engine.ir import INTEGER_ATTRS, NON_INTEGER_ATTRS, Graph
from specgrad.engine.ops import REGISTRY, ShapeError
from specgrad.spec import check_spec, load_spec

try:  # the FD examples may move into each op's register() call
    from specgrad.engine.ops.examples import CASES
except ImportError:  # pragma: no cover
    CASES = {op.name: op.examples for op in REGISTRY.values() if getattr(op, "examples", None)}

SPECS = sorted(p for p in MODELS.glob("*.yaml"))


def integer_positions(value, path=()):
    """(path, value) of every int (not bool) in a spec."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from integer_positions(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from integer_positions(item, path + (i,))
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path, value


def _messages(spec, path, text):
    _, diags = check_spec(spec, [f"{'.'.join(map(str, path))}={text}"])
    return [d.message for d in diags if d.severity == "error"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_integer_setting_refuses_a_whole_float(spec):
    """The oracle is the schema itself: a mapping where an integer setting goes is reported as "must be an
    integer"; there, 2.0 must be refused in the same words, and elsewhere (lr: 1, noise: 0) accepted."""
    checked = 0
    for path, value in integer_positions(load_spec(spec).data):
        if path[0] == "vars":
            continue
        name = ".".join(map(str, path))
        wants_integer = any("must be an integer" in m for m in _messages(spec, path, "{}"))
        messages = _messages(spec, path, f"{value}.0")
        if wants_integer:
            checked += 1
            assert any(m.startswith(f"{_dotted(path)} must be an integer, got {value}.0") for m in messages), (
                name,
                messages,
            )
        else:
            assert not any("must be an integer" in m for m in messages), (name, messages)
    assert checked, "every example spec has an integer setting (seed, steps...)"


def _dotted(path) -> str:
    from specgrad.spec.validate import dotted

    return dotted(path)


@pytest.mark.parametrize(
    "text,where",
    [
        ("seed: 2.0", "seed must be an integer, got 2.0"),
        ("n: 200.0", "data.n must be an integer, got 200.0"),
        ("k: {shape: [6.0], init: zeros}", "model.params.k.shape[0] must be an integer, got 6.0"),
        ("checkpoint: {every: 500, keep_last: 2.0}", "train.checkpoint.keep_last must be an integer, got 2.0"),
        ("batch_size: 32.0", "train.batch_size must be an integer, got 32.0"),
    ],
)
def test_the_error_is_located_at_the_value(tmp_path, text, where):
    spec = (MODELS / "poly.yaml").read_text()
    key = text.split(":")[0]
    lines = spec.splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith(key + ":"))
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = indent + text
    (tmp_path / "spec.yaml").write_text("\n".join(lines) + "\n")
    _, diags = check_spec(tmp_path / "spec.yaml")
    [d] = [d for d in diags if d.message == where]
    assert (d.location.file, d.location.line) == (str(tmp_path / "spec.yaml"), index + 1)


def test_a_layer_argument_takes_an_integer():
    _, diags = check_spec(MODELS / "mlp_moons.yaml", ["model.nodes.0.h1.units=16.0"])
    assert [d.message for d in diags] == ["model.nodes[0].h1.units must be an integer, got 16.0"]


def test_every_op_attribute_is_classified():
    """A new attribute must be declared integer or not, so that the check below covers it."""
    attrs = {a for op in REGISTRY.values() for a in op.attrs}
    assert attrs <= INTEGER_ATTRS | NON_INTEGER_ATTRS and not INTEGER_ATTRS & NON_INTEGER_ATTRS, (
        attrs - INTEGER_ATTRS - NON_INTEGER_ATTRS
    )


def _as_floats(value):
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        return value
    return float(value) if isinstance(value, int) else type(value)(_as_floats(v) for v in value)


def _float_variants():
    for name, cases in CASES.items():
        for inputs, attrs in cases:
            for key, value in attrs.items():
                if (
                    key in INTEGER_ATTRS
                    and _as_floats(value) != value
                    or (
                        key in INTEGER_ATTRS
                        and isinstance(value, (list, tuple))
                        and any(isinstance(v, int) and not isinstance(v, bool) for v in value)
                    )
                ):
                    yield pytest.param(name, inputs, {**attrs, key: _as_floats(value)}, key, id=f"{name}-{key}")


@pytest.mark.parametrize("name,inputs,attrs,key", list(_float_variants()))
def test_every_integer_op_attribute_refuses_a_whole_float(name, inputs, attrs, key):
    graph = Graph()
    nodes = [
        graph.input(
            f"x{i}",
            spec if isinstance(spec, tuple) else np.shape(spec),
            None if isinstance(spec, tuple) else np.asarray(spec).dtype,
        )
        for i, spec in enumerate(inputs)
    ]
    with pytest.raises(ShapeError, match=f"argument '{key}' of {name} must be an integer"):
        graph.apply(name, *nodes, **attrs)


def test_a_formula_argument_takes_an_integer():
    _, diags = check_spec(MODELS / "poly.yaml", ["model.nodes.1.y_hat=sum(phi * k, axis=[0, 1.0])"])
    assert [d.message for d in diags] == [
        "node 'y_hat': argument 'axis' of sum must be an integer or a list of integers, got [0, 1.0]"
    ]

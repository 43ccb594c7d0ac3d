"""Initializers: the variance each promises, orthogonality, seeding, the fans layers state, and overrides."""

import numpy as np
import pytest

from specgrad.base.diagnostics import SpecError
from specgrad.model.build import build_model, init_params
from specgrad.model.init import INITIALIZERS, fans_of


def draw(settings, shape, fans=None, seed=0):
    return INITIALIZERS.create(settings)(
        shape, np.random.default_rng(seed), np.dtype("float64"), fans or fans_of(shape)
    )


@pytest.mark.parametrize(
    "settings,expected_std",
    [
        ({"type": "normal", "std": 0.5}, 0.5),
        ({"type": "uniform", "low": -2, "high": 2}, 4 / np.sqrt(12)),
        ({"type": "glorot_normal"}, np.sqrt(2 / (300 + 200))),
        ({"type": "xavier_uniform"}, np.sqrt(2 / (300 + 200))),
        ({"type": "glorot_uniform", "gain": 2.0}, 2 * np.sqrt(2 / (300 + 200))),
        ({"type": "he_normal"}, np.sqrt(2 / 300)),
        ({"type": "kaiming_uniform"}, np.sqrt(2 / 300)),
        ({"type": "he_uniform", "mode": "fan_out"}, np.sqrt(2 / 200)),
    ],
)
def test_variance_scaling(settings, expected_std):
    w = draw(settings, (300, 200))
    assert abs(w.mean()) < 0.02 * expected_std
    assert w.std() == pytest.approx(expected_std, rel=0.01)


def test_uniform_variants_stay_in_their_bounds():
    limit = np.sqrt(6 / (300 + 200))
    w = draw({"type": "glorot_uniform"}, (300, 200))
    assert -limit <= w.min() and w.max() <= limit and w.max() > 0.99 * limit


@pytest.mark.parametrize("shape", [(6, 6), (10, 4), (4, 10), (2, 3, 8)])
def test_orthogonal(shape):
    w = draw({"type": "orthogonal", "gain": 1.5}, shape).reshape(-1, shape[-1])
    rows, cols = w.shape
    small = w.T @ w if rows >= cols else w @ w.T
    np.testing.assert_allclose(small, 1.5**2 * np.eye(min(rows, cols)), atol=1e-12)


def test_constant_zeros_ones():
    assert np.array_equal(draw({"type": "constant", "value": 0.25}, (2, 3)), np.full((2, 3), 0.25))
    assert np.array_equal(draw({"type": "zeros"}, (3,)), np.zeros(3))
    assert np.array_equal(draw({"type": "ones"}, (3,)), np.ones(3))


def test_seeded():
    a, b, c = (draw({"type": "he_normal"}, (5, 4), seed=s) for s in (1, 1, 2))
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()


def test_fans_of_plain_parameters():
    assert fans_of(()) == (1, 1) and fans_of((7,)) == (7, 7) and fans_of((3, 4, 5)) == (12, 5)


def model_of(nodes, inputs):
    spec = {"model": {"inputs": inputs, "nodes": nodes, "output": "out"}, "loss": "sse", "train": {"steps": 1}}
    return build_model(spec, lambda path: None)


def test_layers_state_their_fans():
    model = model_of(
        [
            {"c": {"layer": "conv2d", "input": "x", "filters": 8, "kernel": 3}},
            {"f": {"layer": "flatten"}},
            {"out": {"layer": "linear", "units": 5}},
        ],
        {"x": [2, 6, 6]},
    )
    assert model.inits["c.weight"].fans == (2 * 9, 8 * 9)  # the receptive field counts
    assert model.inits["out.weight"].fans == (8 * 16, 5)
    assert model.inits["c.weight"].settings == {"type": "glorot_uniform"}
    assert model.inits["out.bias"].settings == {"type": "zeros"}


def test_spec_overrides_a_layers_initializer_by_parameter_name():
    model = model_of(
        [
            {
                "m": {
                    "layer": "mlp",
                    "input": "x",
                    "widths": [4, 3],
                    "init": {"weight": {"type": "normal", "std": 0.01}, "1.bias": {"type": "constant", "value": 0.5}},
                }
            },
            {"out": {"layer": "linear", "units": 1, "init": {"bias": "ones"}}},
        ],
        {"x": [2]},
    )
    settings = {name: p.settings for name, p in model.inits.items()}
    assert settings == {
        "m.0.weight": {"type": "normal", "std": 0.01},
        "m.0.bias": {"type": "zeros"},
        "m.1.weight": {"type": "normal", "std": 0.01},
        "m.1.bias": {"type": "constant", "value": 0.5},
        "out.weight": {"type": "glorot_uniform"},
        "out.bias": {"type": "ones"},
    }
    values = init_params(model, np.random.default_rng(0))
    assert np.all(values["m.1.bias"] == 0.5) and abs(values["m.0.weight"].std() - 0.01) < 0.01


def test_residual_block_init_reaches_its_body():
    model = model_of(
        [
            {
                "out": {
                    "layer": "residual",
                    "input": "x",
                    "init": {"weight": "zeros"},
                    "body": [
                        {"a": {"layer": "linear", "units": 2}},
                        {"b": {"layer": "linear", "units": 2, "init": {"weight": "ones"}}},
                    ],
                }
            }
        ],
        {"x": [2]},
    )
    assert model.inits["out.a.weight"].settings == {"type": "zeros"}
    assert model.inits["out.b.weight"].settings == {"type": "ones"}  # the innermost init wins


def test_orthogonal_on_a_vector_is_an_error():
    with pytest.raises(SpecError, match="orthogonal initialization needs a parameter of rank >= 2"):
        model_of([{"out": {"layer": "linear", "input": "x", "units": 2, "init": {"bias": "orthogonal"}}}], {"x": [2]})


def test_initialization_is_deterministic_in_declaration_order():
    model = model_of(
        [{"h": {"layer": "linear", "input": "x", "units": 3}}, {"out": {"layer": "lstm", "units": 2}}], {"x": [4, 2]}
    )
    a, b = init_params(model, np.random.default_rng(5)), init_params(model, np.random.default_rng(5))
    assert list(a) == ["h.weight", "h.bias", "out.weight", "out.recurrent_weight", "out.bias"]
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)

"""Clipping bounds: what each rule guarantees, and that gradients under the threshold keep their bits."""

import math

import numpy as np
import pytest

from specgrad.optim.clip import clip, clip_global_norm, clip_param_norm, clip_value, global_norm, param_norms
from specgrad.spec.settings import Clip

try:  # the test-only oracle: its tests skip where it is not installed
    import torch
except ImportError:
    torch = None


def grads():
    return {"a": np.array([3.0, 4.0]), "b": np.array([[1.0, -2.0], [2.0, 0.5]])}


def copy(g):
    return {k: v.copy() for k, v in g.items()}


def test_global_norm_bound_and_direction():
    g = grads()
    before = global_norm(g)
    assert before == math.sqrt(25 + 1 + 4 + 4 + 0.25)
    assert clip_global_norm(g, 2.0) == before
    assert global_norm(g) == pytest.approx(2.0 * before / (before + 1e-6), rel=1e-15)  # just under 2
    for k, v in grads().items():
        np.testing.assert_allclose(g[k], v * 2.0 / (before + 1e-6), rtol=1e-15)


def test_per_parameter_norm_bounds_each_gradient_alone():
    g = grads()  # norms: a 5, b sqrt(9.25) = 3.04
    assert clip_param_norm(g, 3.1)
    assert param_norms(g)["a"] == pytest.approx(3.1 * 5 / (5 + 1e-6), rel=1e-15)  # a scaled to the bound...
    np.testing.assert_allclose(g["a"], grads()["a"] * 3.1 / (5 + 1e-6), rtol=1e-15)
    assert g["b"].tobytes() == grads()["b"].tobytes()  # ...b, under it, untouched
    assert not clip_param_norm(g, 10.0)


def test_value_clamps_components_only_beyond_the_bound():
    g = grads()
    clip_value(g, 2.5)
    np.testing.assert_array_equal(g["a"], [2.5, 2.5])
    np.testing.assert_array_equal(g["b"], grads()["b"])


def test_gradients_under_every_threshold_keep_their_bits():
    g = grads()
    clip(g, Clip(max_value=10.0, max_param_norm=10.0, max_norm=10.0), param_norms(g))
    for k, v in grads().items():
        assert g[k].tobytes() == v.tobytes()


def test_rules_combine_in_order_value_param_norm_global():
    g = grads()
    clip(g, Clip(max_value=3.5, max_param_norm=4.0, max_norm=4.5), param_norms(g))
    assert np.abs(g["a"]).max() <= 3.5 and param_norms(g)["a"] <= 4.0 + 1e-12
    assert global_norm(g) <= 4.5 * (1 + 1e-15)


def torch_clipped(g: dict, max_norm: float) -> tuple[float, dict]:
    """The oracle: torch.nn.utils.clip_grad_norm_ on parameters holding these gradients."""
    if torch is None:
        pytest.skip("PyTorch (the test-only oracle) is not installed")
    params = [torch.zeros(v.shape, dtype=torch.float64, requires_grad=True) for v in g.values()]
    for p, v in zip(params, g.values()):
        p.grad = torch.from_numpy(v.copy())
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return float(norm), {k: p.grad.numpy() for k, p in zip(g, params)}


@pytest.mark.parametrize("max_norm", [0.1, 2.0, 6.0, 1e6])
def test_global_norm_clipping_is_torchs(max_norm):
    rng = np.random.default_rng(3)
    g = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3), "s": np.array(0.7)}
    expected_norm, expected = torch_clipped(g, max_norm)
    assert clip_global_norm(g, max_norm) == pytest.approx(expected_norm, rel=1e-15)
    for k in g:
        np.testing.assert_allclose(g[k], expected[k], rtol=1e-14, atol=0)


def test_a_norm_just_under_the_bound_is_scaled_as_torch_scales_it():
    """Within 1e-6 under max_norm, torch still scales (by max_norm / (norm + 1e-6) < 1): so does specgrad."""
    g = grads()
    norm = global_norm(g)
    max_norm = norm - 0.5e-6
    _, expected = torch_clipped(g, max_norm)
    clip(g, Clip(max_norm=max_norm), param_norms(g))
    for k in g:
        assert not np.array_equal(g[k], grads()[k])
        np.testing.assert_allclose(g[k], expected[k], rtol=1e-15, atol=0)


def test_per_parameter_norm_is_torchs_rule_on_each_parameter_alone():
    g = grads()
    clip_param_norm(g, 3.1)
    for k, v in grads().items():
        _, expected = torch_clipped({k: v}, 3.1)
        np.testing.assert_allclose(g[k], expected[k], rtol=1e-15, atol=0)

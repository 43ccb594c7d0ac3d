"""Clipping bounds: what each rule guarantees, and that gradients under the threshold keep their bits."""
import math

import numpy as np

from specgrad.optim.clip import clip, clip_global_norm, clip_param_norm, clip_value, global_norm, param_norms
from specgrad.spec.settings import Clip


def grads():
    return {"a": np.array([3.0, 4.0]), "b": np.array([[1.0, -2.0], [2.0, 0.5]])}


def copy(g):
    return {k: v.copy() for k, v in g.items()}


def test_global_norm_bound_and_direction():
    g = grads()
    before = global_norm(g)
    assert before == math.sqrt(25 + 1 + 4 + 4 + 0.25)
    assert clip_global_norm(g, 2.0) == before
    assert abs(global_norm(g) - 2.0) < 1e-15
    for k, v in grads().items():
        np.testing.assert_allclose(g[k], v * 2.0 / before, rtol=1e-15)


def test_per_parameter_norm_bounds_each_gradient_alone():
    g = grads()                                                   # norms: a 5, b sqrt(9.25) = 3.04
    assert clip_param_norm(g, 3.1)
    assert abs(param_norms(g)["a"] - 3.1) < 1e-15                 # a scaled down to the bound...
    np.testing.assert_allclose(g["a"], grads()["a"] * 3.1 / 5, rtol=1e-15)
    assert g["b"].tobytes() == grads()["b"].tobytes()             # ...b, under it, untouched
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

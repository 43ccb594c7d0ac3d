"""Layers: every registered layer's gradient against finite differences (the test enumerates the registry),
and each layer's forward values against an independent numpy reference or a closed-form property."""

import re

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import yaml
from conftest import ROOT
from jsonschema import Draft202012Validator

from specgrad.base.rng import batch_key
from specgrad.engine.ops import REGISTRY
from specgrad.model.build import build_model, init_params, init_state
from specgrad.model.init import INITIALIZERS
from specgrad.model.layers import LAYERS
from specgrad.spec.schema import build_schema


def model_of(nodes, inputs, output="out", loss="sse", dtype="float64"):
    """The compiled model of a spec with these nodes (the sections build does not read are minimal)."""
    spec = {
        "dtype": dtype,
        "model": {"inputs": inputs, "nodes": nodes, "output": output},
        "loss": loss,
        "train": {"steps": 1},
    }
    return build_model(spec, lambda path: None)


def random_params(model, seed=0):
    """Initial values, perturbed so that zero biases and unit scales do not hide a wrong gradient."""
    rng = np.random.default_rng(seed)
    return {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in init_params(model, rng).items()}


def forward(model, fields, params, state=None, mode="train", key=batch_key(0, 0)):
    """The prediction in ``mode``, and (train mode) the updated state."""
    graph = model if mode == "train" else model.eval
    state = init_state(model) if state is None else state
    outs = graph.plan([graph.prediction, *(model.state_updates.values() if mode == "train" else [])])(
        *graph.feed(fields, params, state, key)
    )
    return outs[0], dict(zip(model.state_updates, outs[1:]))


def finite_difference_error(model, fields, params, eps=1e-6, seed=1):
    """Relative error between <grad L, v> and the central difference of L along a random direction v over
    every parameter (L: the model's loss with a random target, in train mode)."""
    rng = np.random.default_rng(seed)
    state, key = init_state(model), batch_key(0, 0)
    loss_plan = model.plan([model.loss])
    _, *grads = model.plan([model.loss, *model.grads])(*model.feed(fields, params, state, key))
    direction = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    analytic = sum(float(np.sum(g * direction[k])) for k, g in zip(params, grads))

    def loss_at(t):
        moved = {k: v + t * direction[k] for k, v in params.items()}
        return float(loss_plan(*model.feed(fields, moved, state, key))[0])

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    return abs(analytic - numeric) / max(1.0, abs(analytic), abs(numeric))


def with_target(model, fields, seed=2):
    """``fields`` plus a random target ``y`` of the prediction's shape."""
    pred, _ = forward(model, fields, random_params(model))
    return {**fields, "y": np.random.default_rng(seed).standard_normal(np.shape(pred))}


# Each case: the layer under test fed by a linear layer (so its gradient with respect to its input is
# checked too), its input shape per sample, and the data.
rng0 = np.random.default_rng(0)
PRE = {"pre": {"layer": "linear", "input": "x", "units": 4}}
CASES = {
    "linear": [
        ([PRE, {"out": {"layer": "linear", "units": 3}}], {"x": [5]}),
        ([PRE, {"out": {"layer": "linear", "units": 2, "bias": False}}], {"x": [3, 5]}),
    ],
    "mlp": [
        ([PRE, {"out": {"layer": "mlp", "widths": [6, 5, 2], "activation": "tanh"}}], {"x": [5]}),
        ([PRE, {"out": {"layer": "mlp", "widths": [6, 2], "activation": "gelu"}}], {"x": [5]}),
    ],
    "embedding": [
        (
            [
                {"e": {"layer": "embedding", "input": "x", "vocab": 7, "units": 3}},
                {"out": {"layer": "linear", "units": 2}},
            ],
            {"x": {"shape": [4], "dtype": "int64"}},
        )
    ],
    "layernorm": [
        ([PRE, {"out": {"layer": "layernorm"}}], {"x": [5]}),
        ([PRE, {"out": {"layer": "layernorm", "affine": False}}], {"x": [2, 5]}),
    ],
    "batchnorm": [
        ([PRE, {"out": {"layer": "batchnorm"}}], {"x": [5]}),
        ([PRE, {"out": {"layer": "batchnorm", "axis": -1}}], {"x": [3, 5]}),
    ],
    "dropout": [([PRE, {"out": {"layer": "dropout", "rate": 0.5}}], {"x": [5]})],
    "conv2d": [
        ([{"out": {"layer": "conv2d", "input": "x", "filters": 3, "kernel": 3, "padding": "same"}}], {"x": [2, 5, 5]}),
        ([{"out": {"layer": "conv2d", "input": "x", "filters": 2, "kernel": [2, 3], "stride": 2}}], {"x": [1, 6, 7]}),
    ],
    "max_pool2d": [
        (
            [
                {"c": {"layer": "conv2d", "input": "x", "filters": 2, "kernel": 3}},
                {"out": {"layer": "max_pool2d", "kernel": 2}},
            ],
            {"x": [1, 6, 6]},
        )
    ],
    "avg_pool2d": [
        (
            [
                {"c": {"layer": "conv2d", "input": "x", "filters": 2, "kernel": 3}},
                {"out": {"layer": "avg_pool2d", "kernel": 2, "stride": 1}},
            ],
            {"x": [1, 5, 5]},
        )
    ],
    "flatten": [
        (
            [{"c": {"layer": "conv2d", "input": "x", "filters": 2, "kernel": 3}}, {"out": {"layer": "flatten"}}],
            {"x": [1, 4, 4]},
        )
    ],
    "residual": [
        (
            [
                PRE,
                {
                    "out": {
                        "layer": "residual",
                        "body": [
                            {"a": {"layer": "linear", "units": 6}},
                            {"b": "tanh(a)"},
                            {"c": {"layer": "linear", "input": "b", "units": 4}},
                        ],
                    }
                },
            ],
            {"x": [5]},
        )
    ],
    "attention": [
        ([PRE, {"out": {"layer": "attention", "heads": 2}}], {"x": [3, 5]}),
        ([PRE, {"out": {"layer": "attention", "heads": 1, "causal": True, "units": 6}}], {"x": [4, 5]}),
        (
            [
                PRE,
                {"ctx": {"layer": "linear", "input": "x", "units": 3}},
                {"out": {"layer": "attention", "inputs": ["pre", "ctx"], "heads": 2}},
            ],
            {"x": [3, 5]},
        ),
    ],
    "lstm": [
        ([PRE, {"out": {"layer": "lstm", "units": 3}}], {"x": [4, 5]}),
        ([PRE, {"out": {"layer": "lstm", "units": 2, "return_sequences": False}}], {"x": [3, 5]}),
    ],
    "gru": [
        ([PRE, {"out": {"layer": "gru", "units": 3}}], {"x": [4, 5]}),
        ([{"l": {"layer": "lstm", "input": "x", "units": 3}}, {"out": {"layer": "gru", "units": 2}}], {"x": [4, 5]}),
        ([PRE, {"out": {"layer": "gru", "units": 2, "return_sequences": False}}], {"x": [3, 5]}),
    ],
    "polynomial": [
        ([PRE, {"out": {"layer": "polynomial", "degree": 3}}], {"x": [5]}),
        (
            [
                {"p": {"layer": "polynomial", "input": "x", "degree": 2, "constant": False}},
                {"out": {"layer": "linear", "units": 2}},
            ],
            {"x": []},
        ),
    ],
}


def data_for(inputs, batch=6, seed=3):
    """Random data for the model inputs: integer ids below 7 for an integer input, else normal floats."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.integers(0, 7, (batch, *spec["shape"]))
        if isinstance(spec, dict)
        else rng.standard_normal((batch, *spec))
        for name, spec in inputs.items()
    }


def test_every_registered_layer_is_checked():
    assert set(CASES) == set(LAYERS.names())


@pytest.mark.parametrize(
    "name,nodes,inputs", [(n, nodes, inputs) for n, cases in CASES.items() for nodes, inputs in cases]
)
def test_layer_gradient_matches_finite_differences(name, nodes, inputs):
    model = model_of(nodes, inputs)
    fields = with_target(model, data_for(inputs))
    err = finite_difference_error(model, fields, random_params(model))
    assert err < 1e-7, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("name,nodes,inputs", [(n, *cases[0]) for n, cases in CASES.items()])
def test_float32_models_stay_float32_forward_and_backward(name, nodes, inputs):
    model = model_of(nodes, inputs, dtype="float32")
    wide = [n for n in model.graph.nodes if n.dtype == np.float64]
    assert not wide, f"{name}: float64 nodes {[n.op for n in wide]}"


# ------------------------------------------------------------------------------------- forward values
def test_linear_and_mlp_forward():
    model = model_of(
        [
            {"h": {"layer": "linear", "input": "x", "units": 4}},
            {"out": {"layer": "mlp", "widths": [3, 2], "activation": "relu"}},
        ],
        {"x": [5]},
    )
    p = random_params(model)
    x = np.random.default_rng(0).standard_normal((6, 5))
    h = x @ p["h.weight"] + p["h.bias"]
    expected = np.maximum(h @ p["out.0.weight"] + p["out.0.bias"], 0) @ p["out.1.weight"] + p["out.1.bias"]
    np.testing.assert_allclose(forward(model, {"x": x}, p)[0], expected, rtol=1e-13)


def test_layernorm_output_has_mean_0_and_variance_1():
    model = model_of([{"out": {"layer": "layernorm", "input": "x", "eps": 1e-12}}], {"x": [3, 16]})
    x = 5 + 3 * np.random.default_rng(0).standard_normal((4, 3, 16))
    out, _ = forward(model, {"x": x}, init_params(model, np.random.default_rng(0)))  # scale 1, bias 0
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(-1), 1, rtol=1e-9)


def test_batchnorm_train_uses_batch_statistics_and_updates_running_ones():
    model = model_of([{"out": {"layer": "batchnorm", "input": "x", "momentum": 0.25, "eps": 1e-12}}], {"x": [3]})
    x = 2 + 4 * np.random.default_rng(0).standard_normal((10, 3))
    p = init_params(model, np.random.default_rng(0))
    out, new = forward(model, {"x": x}, p)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(0), 1, rtol=1e-9)
    np.testing.assert_allclose(new["out.running_mean"], 0.25 * x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(new["out.running_var"], 0.75 + 0.25 * x.var(0, ddof=1), rtol=1e-13)


def test_batchnorm_eval_uses_running_statistics():
    model = model_of([{"out": {"layer": "batchnorm", "input": "x"}}], {"x": [2, 3, 3]})  # channels axis 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3, 3))
    p = random_params(model)
    state = {"out.running_mean": np.array([0.5, -1.0]), "out.running_var": np.array([2.0, 0.5])}
    out, _ = forward(model, {"x": x}, p, state, mode="eval")
    per_channel = lambda v: v[:, None, None]
    expected = (x - per_channel(state["out.running_mean"])) / np.sqrt(
        per_channel(state["out.running_var"]) + 1e-5
    ) * per_channel(p["out.scale"]) + per_channel(p["out.bias"])
    np.testing.assert_allclose(out, expected, rtol=1e-13)
    train_out, _ = forward(model, {"x": x}, p, state)
    assert not np.allclose(train_out, out)  # the modes really differ


def test_dropout_zeroes_and_rescales_in_training_and_is_the_identity_in_eval():
    model = model_of([{"out": {"layer": "dropout", "input": "x", "rate": 0.25}}], {"x": [1000]})
    x = np.random.default_rng(0).standard_normal((20, 1000))
    out, _ = forward(model, {"x": x}, {})
    dropped = out == 0
    assert abs(dropped.mean() - 0.25) < 0.01
    np.testing.assert_allclose(out[~dropped], x[~dropped] / 0.75, rtol=1e-15)
    assert np.array_equal(forward(model, {"x": x}, {}, mode="eval")[0], x)
    again, _ = forward(model, {"x": x}, {})
    other_step, _ = forward(model, {"x": x}, {}, key=batch_key(0, 1))
    assert np.array_equal(again, out) and not np.array_equal(other_step, out)  # a mask per step, reproducible


def test_two_dropout_layers_draw_different_masks():
    model = model_of(
        [
            {"a": {"layer": "dropout", "input": "x", "rate": 0.5}},
            {"b": {"layer": "dropout", "input": "x", "rate": 0.5}},
            {"out": "a - b"},
        ],
        {"x": [100]},
    )
    out, _ = forward(model, {"x": np.ones((4, 100))}, {})
    assert np.any(out != 0)


def test_conv2d_layer_matches_a_direct_loop():
    model = model_of(
        [{"out": {"layer": "conv2d", "input": "x", "filters": 3, "kernel": 3, "padding": "same"}}], {"x": [2, 5, 6]}
    )
    p = random_params(model)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 6))
    w, b = p["out.weight"], p["out.bias"]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, 3, 5, 6))
    for i in range(5):
        for j in range(6):
            expected[:, :, i, j] = np.einsum("nchw,ochw->no", padded[:, :, i : i + 3, j : j + 3], w) + b
    np.testing.assert_allclose(forward(model, {"x": x}, p)[0], expected, rtol=1e-12, atol=1e-13)


def test_pooling_and_flatten():
    model = model_of(
        [
            {"m": {"layer": "max_pool2d", "input": "x", "kernel": 2}},
            {"a": {"layer": "avg_pool2d", "input": "x", "kernel": 2}},
            {"out": "m - a"},
        ],
        {"x": [1, 4, 4]},
    )
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    blocks = x.reshape(1, 1, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    np.testing.assert_array_equal(forward(model, {"x": x}, {})[0], blocks.max((-2, -1)) - blocks.mean((-2, -1)))
    flat = model_of([{"out": {"layer": "flatten", "input": "x"}}], {"x": [2, 3, 4]})
    assert flat.prediction.shape == ("B", 24)


def test_embedding_looks_up_rows():
    model = model_of(
        [{"out": {"layer": "embedding", "input": "x", "vocab": 5, "units": 3}}], {"x": {"shape": [4], "dtype": "int64"}}
    )
    p = random_params(model)
    ids = np.array([[0, 4, 4, 2], [1, 1, 3, 0]])
    np.testing.assert_array_equal(forward(model, {"x": ids}, p)[0], p["out.weight"][ids])


def test_polynomial_features():
    model = model_of([{"out": {"layer": "polynomial", "input": "x", "degree": 2}}], {"x": [2]})
    x = np.array([[2.0, 3.0]])
    np.testing.assert_array_equal(forward(model, {"x": x}, {})[0], [[1, 2, 4, 1, 3, 9]])


def test_residual_adds_its_input_and_keeps_its_names_inside():
    model = model_of(
        [
            {
                "out": {
                    "layer": "residual",
                    "input": "x",
                    "body": [{"a": {"layer": "linear", "units": 3}}, {"b": "tanh(a)"}],
                }
            }
        ],
        {"x": [3]},
    )
    assert list(model.params) == ["out.a.weight", "out.a.bias"]
    p = random_params(model)
    x = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(
        forward(model, {"x": x}, p)[0], x + np.tanh(x @ p["out.a.weight"] + p["out.a.bias"]), rtol=1e-14
    )


# --------------------------------------------------------------------- numpy references: attention, rnn
def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def attention_reference(p, x, heads, causal):
    lin = lambda name, v: v @ p[f"out.{name}.weight"] + p[f"out.{name}.bias"]
    q, k, v = lin("query", x), lin("key", x), lin("value", x)
    B, T, D = q.shape
    size = D // heads
    out = np.zeros_like(q)
    for b in range(B):
        for h in range(heads):
            cols = slice(h * size, (h + 1) * size)
            scores = q[b, :, cols] @ k[b, :, cols].T / np.sqrt(size)
            if causal:
                scores = np.where(np.tril(np.ones((T, T))) > 0, scores, -np.inf)
            out[b, :, cols] = softmax(scores) @ v[b, :, cols]
    return lin("output", out)


@pytest.mark.parametrize("heads,causal", [(1, False), (3, False), (3, True)])
def test_attention_matches_a_numpy_reference(heads, causal):
    model = model_of([{"out": {"layer": "attention", "input": "x", "heads": heads, "causal": causal}}], {"x": [5, 6]})
    p = random_params(model)
    x = np.random.default_rng(0).standard_normal((2, 5, 6))
    np.testing.assert_allclose(forward(model, {"x": x}, p)[0], attention_reference(p, x, heads, causal), rtol=1e-11)


def test_causal_attention_does_not_look_ahead():
    model = model_of([{"out": {"layer": "attention", "input": "x", "heads": 2, "causal": True}}], {"x": [5, 4]})
    p = random_params(model)
    x = np.random.default_rng(0).standard_normal((1, 5, 4))
    changed = x.copy()
    changed[:, 3:] += 1.0
    a, b = forward(model, {"x": x}, p)[0], forward(model, {"x": changed}, p)[0]
    np.testing.assert_array_equal(a[:, :3], b[:, :3])
    assert not np.allclose(a[:, 3:], b[:, 3:])


def lstm_reference(p, x):
    W, U, b = p["out.weight"], p["out.recurrent_weight"], p["out.bias"]
    H = U.shape[0]
    h = c = np.zeros((x.shape[0], H))
    hs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ W + h @ U + b
        i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H : 2 * H]), np.tanh(z[:, 2 * H : 3 * H]), sigmoid(z[:, 3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1)


def gru_reference(p, x):
    W, U, b, c = p["out.weight"], p["out.recurrent_weight"], p["out.bias"], p["out.recurrent_bias"]
    H = U.shape[0]
    h = np.zeros((x.shape[0], H))
    hs = []
    for t in range(x.shape[1]):
        gx, gh = x[:, t] @ W + b, h @ U + c
        r = sigmoid(gx[:, :H] + gh[:, :H])
        z = sigmoid(gx[:, H : 2 * H] + gh[:, H : 2 * H])
        n = np.tanh(gx[:, 2 * H :] + r * gh[:, 2 * H :])
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs, 1)


@pytest.mark.parametrize("layer,reference", [("lstm", lstm_reference), ("gru", gru_reference)])
def test_recurrent_layers_match_a_numpy_loop(layer, reference):
    x = np.random.default_rng(0).standard_normal((3, 6, 4))
    seq = model_of([{"out": {"layer": layer, "input": "x", "units": 5}}], {"x": [6, 4]})
    p = random_params(seq)
    expected = reference(p, x)
    np.testing.assert_allclose(forward(seq, {"x": x}, p)[0], expected, rtol=1e-12)
    last = model_of([{"out": {"layer": layer, "input": "x", "units": 5, "return_sequences": False}}], {"x": [6, 4]})
    np.testing.assert_allclose(forward(last, {"x": x}, p)[0], expected[:, -1], rtol=1e-12)


def test_stacked_recurrent_layers_take_the_steps_without_slicing():
    x = np.random.default_rng(0).standard_normal((3, 6, 4))
    model = model_of(
        [{"l": {"layer": "lstm", "input": "x", "units": 5}}, {"out": {"layer": "gru", "units": 2}}], {"x": [6, 4]}
    )
    p = random_params(model)
    lstm_out = lstm_reference({k.replace("l.", "out.", 1): v for k, v in p.items() if k.startswith("l.")}, x)
    expected = gru_reference({k: v for k, v in p.items() if k.startswith("out.")}, lstm_out)
    np.testing.assert_allclose(forward(model, {"x": x}, p)[0], expected, rtol=1e-12)
    assert not [n for n in model.graph.nodes if n.op == "slice" and n.inputs[0].op == "stack"]


def test_mlp_activations_are_registered_ops():
    from specgrad.model.layers.dense import ACTIVATIONS

    assert "relu" in ACTIVATIONS and all(a in REGISTRY for a in ACTIVATIONS)


# ------------------------------------------------------------------------------------------------ docs
DOCS = ROOT / "docs" / "layers.md"


def test_docs_describe_every_layer_and_initializer():
    text = DOCS.read_text()
    headings = {h.strip() for line in text.splitlines() if line.startswith("### ") for h in line[4:].split(",")}
    assert set(LAYERS.names()) <= headings
    rows = {
        name.strip(" `")
        for line in text.splitlines()
        if line.startswith("| `")
        for name in line.split("|")[1].split(",")
    }
    assert set(INITIALIZERS.names()) <= rows


def test_docs_snippets_are_valid_nodes():
    """Every node of the yaml snippets in the docs that uses a layer passes the spec schema."""
    schema = build_schema()
    node_schema = Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/node"})
    snippets = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    nodes = []

    def collect(value):
        if isinstance(value, list):
            nodes.extend(v for v in value if isinstance(v, dict) and len(v) == 1)
            for v in value:
                collect(v)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)

    for text in snippets:
        collect(yaml.safe_load(text))
    layered = [n for n in nodes if isinstance(next(iter(n.values())), dict) and "layer" in next(iter(n.values()))]
    assert {next(iter(n.values()))["layer"] for n in layered} == set(LAYERS.names())
    for node in layered:
        errors = [e.message for e in node_schema.iter_errors(node)]
        assert not errors, (node, errors)


def test_residual_blocks_nest():
    model = model_of(
        [
            {
                "out": {
                    "layer": "residual",
                    "input": "x",
                    "body": [
                        {"inner": {"layer": "residual", "body": [{"a": {"layer": "linear", "units": 3}}]}},
                        {"b": {"layer": "linear", "units": 3}},
                    ],
                }
            }
        ],
        {"x": [3]},
    )
    assert list(model.params) == ["out.inner.a.weight", "out.inner.a.bias", "out.b.weight", "out.b.bias"]
    p = random_params(model)
    x = np.random.default_rng(0).standard_normal((4, 3))
    inner = x + x @ p["out.inner.a.weight"] + p["out.inner.a.bias"]
    np.testing.assert_allclose(
        forward(model, {"x": x}, p)[0], x + inner @ p["out.b.weight"] + p["out.b.bias"], rtol=1e-13
    )


# ------------------------------------------------------------------ gradients against HIPS autograd
def autograd_lstm(p, x):
    W, U, b = p["out.weight"], p["out.recurrent_weight"], p["out.bias"]
    H = U.shape[0]
    sig = lambda z: 1 / (1 + anp.exp(-z))
    h = c = anp.zeros((x.shape[0], H))
    hs = []
    for t in range(x.shape[1]):
        z = anp.dot(x[:, t], W) + anp.dot(h, U) + b
        c = sig(z[:, H : 2 * H]) * c + sig(z[:, :H]) * anp.tanh(z[:, 2 * H : 3 * H])
        h = sig(z[:, 3 * H :]) * anp.tanh(c)
        hs.append(h)
    return anp.stack(hs, 1)


def autograd_attention(p, x, heads=2, causal=True):
    lin = lambda name, v: anp.dot(v, p[f"out.{name}.weight"]) + p[f"out.{name}.bias"]
    B, T, D = x.shape
    size = D // heads
    split = lambda v: anp.transpose(anp.reshape(v, (B, T, heads, size)), (0, 2, 1, 3))
    q, k, v = split(lin("query", x)), split(lin("key", x)), split(lin("value", x))
    scores = anp.einsum("bhts,bhus->bhtu", q, k) / np.sqrt(size)
    if causal:
        scores = anp.where(np.tril(np.ones((T, T))) > 0, scores, -1e30)
    e = anp.exp(scores - anp.max(scores, -1, keepdims=True))
    mixed = anp.einsum("bhtu,bhus->bhts", e / anp.sum(e, -1, keepdims=True), v)
    return lin("output", anp.reshape(anp.transpose(mixed, (0, 2, 1, 3)), (B, T, D)))


@pytest.mark.parametrize(
    "node,reference",
    [
        ({"layer": "lstm", "units": 3}, autograd_lstm),
        ({"layer": "attention", "heads": 2, "causal": True}, autograd_attention),
    ],
)
def test_gradients_match_hips_autograd(node, reference):
    model = model_of([{"out": {**node, "input": "x"}}], {"x": [5, 4]})
    fields = with_target(model, {"x": np.random.default_rng(0).standard_normal((3, 5, 4))})
    p = random_params(model)
    _, *grads = model.plan([model.loss, *model.grads])(*model.feed(fields, p))
    expected = autograd.grad(lambda q: anp.sum((reference(q, fields["x"]) - fields["y"]) ** 2))(p)
    for name, g in zip(model.params, grads):
        np.testing.assert_allclose(g, expected[name], rtol=1e-10, atol=1e-12, err_msg=name)

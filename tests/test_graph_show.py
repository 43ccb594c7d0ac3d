"""`specgrad graph`: the compiled graph, named after the spec's nodes, as text and as Graphviz dot."""
import re

from conftest import MODELS
from specgrad.graph.show import graph_nodes, render_dot, render_text
from specgrad.spec import load_spec


def test_text_lists_the_spec_nodes_with_their_inferred_shapes():
    model = load_spec(MODELS / "poly.yaml").model
    lines = render_text(model).splitlines()
    assert "  phi = powers(x, degree=5)                      [B, 6] float64" in lines
    assert "y_hat = matmul(phi, k)                           [B] float64" in lines
    assert lines[-1] == "prediction: y_hat   loss: loss"


def test_backward_shows_the_gradient_nodes():
    model = load_spec(MODELS / "poly.yaml").model
    text = render_text(model, backward=True)
    grad = model.grads[0]
    assert f"gradients: k <- %{grad.id}" in text
    assert f"%{grad.id} = matmul(" in text and len(text.splitlines()) > len(render_text(model).splitlines())


def test_dot_has_one_edge_per_input():
    model = load_spec(MODELS / "mlp_moons.yaml").model
    dot = render_dot(model, backward=True)
    nodes = graph_nodes(model, backward=True)
    assert dot.startswith("digraph specgrad {") and dot.endswith("}")
    assert len(re.findall(r"^  n\d+ -> n\d+;$", dot, re.M)) == sum(len(n.inputs) for n in nodes)
    assert len(re.findall(r"^  n\d+ \[label=", dot, re.M)) == len(nodes)

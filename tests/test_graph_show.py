"""`specgrad graph`: the compiled graph, named after the spec's nodes, as text and as Graphviz dot."""

import re

import pytest
from conftest import MODELS

from specgrad.engine.show import graph_nodes, render_dot, render_text
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


@pytest.mark.slow
def test_graph_command_as_a_user_runs_it(tmp_path):
    from conftest import run_cli

    text = run_cli("graph", MODELS / "poly.yaml")
    assert text.returncode == 0 and "y_hat = matmul(phi, k)" in text.stdout
    dot = run_cli("graph", MODELS / "poly.yaml", "--format", "dot", "--backward")
    assert dot.returncode == 0 and dot.stdout.startswith("digraph specgrad {")
    missing = run_cli("graph", tmp_path / "nope.yaml")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr

"""Losses: graph builders from (prediction, target) nodes to a scalar loss node."""
from specgrad.components import NAME, Registry

# ``target`` names the data field the prediction is compared with (default ``y``).
LOSSES = Registry("loss", common={"target": NAME})


@LOSSES.register("sse")
def sse():
    """sum of squared errors, the article's loss: sum((y_hat - y) ** 2)"""
    return lambda pred, target: pred.graph.apply("sum", pred.graph.apply("square", pred - target))


@LOSSES.register("mse")
def mse():
    """mean squared error: mean((y_hat - y) ** 2)"""
    return lambda pred, target: pred.graph.apply("mean", pred.graph.apply("square", pred - target))

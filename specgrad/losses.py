"""Losses: graph builders from (prediction, target) nodes to a scalar loss node."""
from specgrad.components import NAME, Registry

# ``target`` names the data field the prediction is compared with (default ``y``); an entry's
# ``target={"dtype": "float" | "int"}`` says what that field must hold, which `validate` checks against the
# fields a data source declares.
LOSSES = Registry("loss", common={"target": NAME})


@LOSSES.register("sse", target={"dtype": "float"})
def sse():
    """sum of squared errors, the article's loss: sum((y_hat - y) ** 2)"""
    return lambda pred, target: pred.graph.apply("sum", pred.graph.apply("square", pred - target))


@LOSSES.register("mse", target={"dtype": "float"})
def mse():
    """mean squared error: mean((y_hat - y) ** 2)"""
    return lambda pred, target: pred.graph.apply("mean", pred.graph.apply("square", pred - target))

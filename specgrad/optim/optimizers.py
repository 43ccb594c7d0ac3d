"""Optimizers update parameters in place from their gradients, with the update rules PyTorch documents.
Their state is a flat dict of arrays so checkpoints can store it in an npz."""
from __future__ import annotations

import numpy as np

from specgrad.components import NON_NEGATIVE, POSITIVE, Registry

OPTIMIZERS = Registry("optimizer")


class Optimizer:
    def __init__(self, params: dict[str, np.ndarray], lr: float):
        self.params = params
        self.lr = lr

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        raise NotImplementedError

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for key, value in self.state_arrays().items():
            value[...] = arrays[key]


@OPTIMIZERS.register("sgd", {"lr": POSITIVE}, required=["lr"])
class SGD(Optimizer):
    """plain gradient descent: p -= lr * g"""

    def step(self, grads, lr):
        for name, p in self.params.items():
            p -= lr * grads[name]


@OPTIMIZERS.register("adam", {"lr": POSITIVE, "beta1": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                              "beta2": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}, "eps": POSITIVE},
                     required=["lr"])
class Adam(Optimizer):
    """Adam (Kingma & Ba): bias-corrected moving averages of the gradient and its square"""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = np.zeros((), np.int64)
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, grads, lr):
        self.t += 1
        t = int(self.t)
        c1, c2 = 1 - self.beta1 ** t, 1 - self.beta2 ** t
        for name, p in self.params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= lr * (m / c1) / (np.sqrt(v / c2) + self.eps)

    def state_arrays(self):
        return {"t": self.t, **{f"m/{k}": a for k, a in self.m.items()}, **{f"v/{k}": a for k, a in self.v.items()}}


def make_optimizer(settings: dict, params: dict[str, np.ndarray]) -> Optimizer:
    return OPTIMIZERS.create(settings, params=params)

"""The conditioning of a model that is linear in its parameters, measured through the compiled model.

Such a model predicts ``f(θ) = f(0) + X θ`` for a feature matrix X (polynomial features, a linear layer's
inputs...), and the Hessian of a squared loss is ``2 XᵀX`` (over the batch size for a mean): gradient
descent needs about cond(XᵀX) steps per factor e of progress along the narrowest direction of the valley.
X is read off the compiled model — one forward pass per parameter entry, at the unit vectors — and the
model is accepted as linear only if a random parameter vector predicts ``f(0) + X θ`` to rounding error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specgrad.model.build import init_state

MAX_PARAMETERS = 2000  # one forward pass per parameter entry: beyond this the check is skipped
SQUARED_LOSSES = ("sse", "mse")


@dataclass
class Conditioning:
    rows: int  # predictions (samples x outputs)
    columns: int  # parameter entries
    condition: float  # cond(XᵀX) = (σ_max / σ_min)²; inf when the features are dependent
    scaled_condition: float  # the same with every column scaled to norm 1 (what standardizing buys)
    optimum_loss: float | None  # the least-squares loss, for a squared loss


def linear_conditioning(
    model, fields: dict[str, np.ndarray], loss_type: str, rng: np.random.Generator | None = None
) -> Conditioning | None:
    """cond(XᵀX) of ``model`` (a compiled ``specgrad.model.build.Model``) on ``fields``, or None when the model is
    not linear in its parameters (or too large to check, or random: dropout)."""

    forward = model.eval
    sizes = {name: int(np.prod(node.shape)) for name, node in forward.params.items()}
    total = sum(sizes.values())
    if forward.rng is not None or not 0 < total <= MAX_PARAMETERS:
        return None
    rng = rng or np.random.default_rng(0)
    plan = forward.plan([forward.prediction])
    state = init_state(model)

    def predict(theta: np.ndarray) -> np.ndarray:
        params, start = {}, 0
        for name, node in forward.params.items():
            params[name] = theta[start : start + sizes[name]].reshape(node.shape).astype(node.dtype)
            start += sizes[name]
        return np.asarray(plan(*forward.feed(fields, params, state)), np.float64).reshape(-1)

    with np.errstate(all="ignore"):
        offset = predict(np.zeros(total))
        features = np.stack([predict(np.eye(1, total, j)[0]) - offset for j in range(total)], axis=1)
        theta = rng.standard_normal(total)
        linear = offset + features @ theta
        actual = predict(theta)
    scale = np.abs(offset).max(initial=0) + np.abs(features).sum(axis=1).max(initial=0) * np.abs(theta).max() + 1e-300
    if not (np.isfinite(actual).all() and np.isfinite(features).all()) or np.abs(actual - linear).max() > 1e-8 * scale:
        return None
    condition = _gram_condition(features)
    norms = np.linalg.norm(features, axis=0)
    scaled = _gram_condition(features / np.where(norms > 0, norms, 1.0))
    optimum = None
    if loss_type in SQUARED_LOSSES and model.target in fields:
        target = np.asarray(fields[model.target], np.float64).reshape(-1)
        best, *_ = np.linalg.lstsq(features, target - offset, rcond=None)
        residual = features @ best + offset - target
        optimum = float(residual @ residual) / (len(residual) if loss_type == "mse" else 1)
    return Conditioning(features.shape[0], total, condition, scaled, optimum)


def _gram_condition(features: np.ndarray) -> float:
    singular = np.linalg.svd(features, compute_uv=False)
    if singular.size == 0 or singular[-1] <= singular[0] * 1e-15:
        return float("inf")
    return float((singular[0] / singular[-1]) ** 2)

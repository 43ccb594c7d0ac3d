"""Checks of a run's settings that the JSON Schema cannot express and that need the compiled model but no
data: the optimizer's own rules, validation, metrics against the loss, standardization. They are part of
``specgrad validate``'s one pass (specgrad/spec/validate.py), so ``validate`` and ``train`` report them
identically, each at its place in the spec, before any data is loaded."""
from __future__ import annotations

from typing import Callable

from specgrad.spec.errors import Diagnostic, Location


def train_diagnostics(data: dict, model, loc: Callable[[tuple], Location]) -> list[Diagnostic]:
    """Problems with the optimizer, train, metrics and data settings of a schema-valid spec whose model built."""
    import numpy as np

    from specgrad.losses import make_loss
    from specgrad.metrics import check_metrics, metric_name
    from specgrad.optim.optimizers import make_optimizer

    errors = []
    # the optimizer checks its own settings (nesterov needs momentum, groups must match parameters)
    try:
        make_optimizer(data["optimizer"], {n: np.zeros(p.shape, p.dtype) for n, p in model.params.items()})
    except ValueError as e:
        errors.append(Diagnostic(f"optimizer: {e}", loc(("optimizer",))))
    metrics = data.get("metrics", [])
    kind = make_loss(data["loss"]).target_of(model.prediction).kind
    errors += [Diagnostic(message, loc(("metrics", i))) for i, message in check_metrics(metrics, kind)]
    standardized = data["data"].get("standardize", [])
    if model.target in standardized:
        errors.append(Diagnostic(f"data: standardize: '{model.target}' is the loss target; predictions would come "
                                 "out in standardized units (standardize model inputs only)",
                                 loc(("data", "standardize", standardized.index(model.target)))))
    validation = data["train"].get("validation")
    if validation is not None:
        if not (data["data"].get("split") or {}).get("val"):
            errors.append(Diagnostic("train.validation needs a validation split: set data.split.val (e.g. 0.2)",
                                     loc(("train", "validation"))))
        known = ["loss", *(metric_name(m) for m in metrics)]
        metric = validation.get("metric", "loss")
        if metric not in known:
            errors.append(Diagnostic(f"train.validation.metric '{metric}' is not computed; use one of "
                                     f"{', '.join(known)} (or add it to metrics)", loc(("train", "validation", "metric"))))
        if not (validation.get("every") or validation.get("every_epochs")):
            errors.append(Diagnostic("train.validation needs 'every' or 'every_epochs'", loc(("train", "validation"))))
    return errors

"""Checks of a run's settings that the JSON Schema cannot express and that need the compiled model but no
data: the optimizer's own rules, metrics against the loss, standardization, validation. They are part of
``specgrad validate``'s one pass (specgrad/spec/validate.py), so ``validate`` and ``train`` report them
identically, each at its place in the spec, before any data is loaded."""
from __future__ import annotations

from typing import Callable

from specgrad.base.diagnostics import Diagnostic, Location

Where = Callable[[tuple], Location]


def train_diagnostics(data: dict, model, loc: Where, broken: set[str] = frozenset()) -> list[Diagnostic]:
    """Problems with the optimizer, metrics, data and train settings of a spec whose model built. A check
    that reads a section in ``broken`` (one with a schema error, already reported) is skipped."""
    return [d for sections, check in CHECKS if not sections & broken for d in check(data, model, loc)]


def _optimizer(data: dict, model, loc: Where) -> list[Diagnostic]:
    """The optimizer checks its own settings: nesterov needs momentum, groups must match parameters."""
    import numpy as np

    from specgrad.optim.optimizers import make_optimizer
    try:
        make_optimizer(data["optimizer"], {n: np.zeros(p.shape, p.dtype) for n, p in model.params.items()})
    except ValueError as e:
        return [Diagnostic(f"optimizer: {e}", loc(("optimizer",)))]
    return []


def _metrics(data: dict, model, loc: Where) -> list[Diagnostic]:
    from specgrad.model.losses import make_loss
    from specgrad.model.metrics import check_metrics
    kind = make_loss(data["loss"]).target_of(model.prediction).kind
    return [Diagnostic(message, loc(("metrics", i))) for i, message in check_metrics(data.get("metrics", []), kind)]


def _standardize(data: dict, model, loc: Where) -> list[Diagnostic]:
    names = data["data"].get("standardize", [])
    if model.target not in names:
        return []
    return [Diagnostic(f"data: standardize: '{model.target}' is the loss target; predictions would come out in "
                       "standardized units (standardize model inputs only)",
                       loc(("data", "standardize", names.index(model.target))))]


def _validation(data: dict, model, loc: Where) -> list[Diagnostic]:
    from specgrad.model.metrics import metric_name
    validation = data["train"].get("validation")
    if validation is None:
        return []
    errors = []
    if not (data["data"].get("split") or {}).get("val"):
        errors.append(Diagnostic("train.validation needs a validation split: set data.split.val (e.g. 0.2)",
                                 loc(("train", "validation"))))
    known = ["loss", *(metric_name(m) for m in data.get("metrics", []))]
    metric = validation.get("metric", "loss")
    if metric not in known:
        errors.append(Diagnostic(f"train.validation.metric '{metric}' is not computed; use one of "
                                 f"{', '.join(known)} (or add it to metrics)", loc(("train", "validation", "metric"))))
    if not (validation.get("every") or validation.get("every_epochs")):
        errors.append(Diagnostic("train.validation needs 'every' or 'every_epochs'", loc(("train", "validation"))))
    return errors


# each check, with the sections it reads (the model stands for model and loss, which built)
CHECKS = [({"optimizer"}, _optimizer), ({"metrics"}, _metrics), ({"data"}, _standardize),
          ({"train", "data", "metrics"}, _validation)]

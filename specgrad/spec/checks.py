"""Checks of a run's settings that the JSON Schema cannot express and that need the compiled model but no
data: the optimizer's own rules, metrics against the loss, standardization, validation. They are part of
``specgrad validate``'s one pass (specgrad/spec/validate.py), so ``validate`` and ``train`` report them
identically, each at its place in the spec, before any data is loaded."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import cast

from specgrad.base.components import normalize
from specgrad.base.diagnostics import Diagnostic, Location
from specgrad.data.sources import batches_per_epoch, no_training_rows, no_validation_rows, split_sizes
from specgrad.model.losses import DECODED, make_loss
from specgrad.model.metrics import check_metrics, metric_name
from specgrad.optim.optimizers import OPTIMIZERS, Optimizer, make_optimizer
from specgrad.optim.schedules import make_schedule
from specgrad.spec.settings import Train, parse
from specgrad.spec.sizes import data_rows, memory_diagnostics, stand_in_params

Where = Callable[[tuple], Location]


def train_diagnostics(data: dict, model, loc: Where, broken: AbstractSet[str] = frozenset()) -> list[Diagnostic]:
    """Problems with the optimizer, metrics, data and train settings of a spec whose model built. A check
    that reads a section in ``broken`` (one with a schema error, already reported) is skipped."""
    return [d for sections, check in CHECKS if not sections & broken for d in check(data, model, loc)]


def _optimizer(data: dict, model, loc: Where) -> list[Diagnostic]:
    """The optimizer checks its own settings: nesterov needs momentum, groups must match parameters."""
    try:
        make_optimizer(data["optimizer"], stand_in_params(model.params))  # never the model's real size
    except ValueError as e:
        return [Diagnostic(f"optimizer: {e}", loc(("optimizer",)))]
    return []


def _schedule(data: dict, model, loc: Where) -> list[Diagnostic]:
    """A schedule that cycles momentum needs an optimizer that has one (torch's OneCycleLR refuses too)."""
    optimizer = normalize(data["optimizer"])["type"]
    factory = cast("type[Optimizer]", OPTIMIZERS[optimizer].factory)  # the registry holds Optimizer classes
    if factory.cycled is None and make_schedule(data.get("schedule"), 1.0, 10).momentum:
        return [
            Diagnostic(
                f"schedule: onecycle cycles the optimizer's momentum (cycle_momentum: true by default), "
                f"which {optimizer} does not have; set cycle_momentum: false",
                loc(("schedule",)),
            )
        ]
    return []


def _full_batch(data: dict, model, loc: Where) -> list[Diagnostic]:
    """An optimizer that compares losses along a line (L-BFGS) needs one fixed objective: the whole training
    split every step, the true gradient."""
    name = data["optimizer"]["type"]
    if not OPTIMIZERS[name].meta.get("full_batch"):
        return []
    t, errors = parse(Train, data["train"]), []
    if t.batch_size != "full":
        errors.append(
            Diagnostic(
                f"train.batch_size: the {name} optimizer needs full-batch training (batch_size: "
                "full): its line search compares losses of one fixed objective",
                loc(("train", "batch_size")),
            )
        )
    if t.accumulate != 1:
        errors.append(
            Diagnostic(
                f"train.accumulate: the {name} optimizer takes whole-data steps; remove accumulate",
                loc(("train", "accumulate")),
            )
        )
    if t.clip is not None:
        errors.append(
            Diagnostic(
                f"train.clip: the {name} optimizer needs the true gradient (its line search "
                "sets the step length); remove clip",
                loc(("train", "clip")),
            )
        )
    return errors


def _metrics(data: dict, model, loc: Where) -> list[Diagnostic]:
    declared = data.get("metrics", [])
    kind = make_loss(data["loss"]).target_of(model.prediction).kind
    out = [Diagnostic(message, loc(("metrics", i))) for i, message in check_metrics(declared, kind)]
    names = [metric_name(m) for m in declared]
    out += [  # summary.json and train.validation.metric know a metric by its name
        Diagnostic(
            f"metric '{name}' is listed twice: results are kept by name, so one would hide the other",
            loc(("metrics", i)),
        )
        for i, name in enumerate(names)
        if name in names[:i]
    ]
    return out


def _standardize(data: dict, model, loc: Where) -> list[Diagnostic]:
    names = data["data"].get("standardize", [])
    if model.target not in names:
        return []
    return [
        Diagnostic(
            f"data: standardize: '{model.target}' is the loss target; predictions would come out in "
            "standardized units (standardize model inputs only)",
            loc(("data", "standardize", names.index(model.target))),
        )
    ]


def _validation(data: dict, model, loc: Where) -> list[Diagnostic]:
    validation = data["train"].get("validation")
    if validation is None:
        return []
    errors = []
    if not (data["data"].get("split") or {}).get("val"):
        errors.append(
            Diagnostic(
                "train.validation needs a validation split: set data.split.val (e.g. 0.2)", loc(("train", "validation"))
            )
        )
    known = ["loss", *(metric_name(m) for m in data.get("metrics", []))]
    metric = validation.get("metric", "loss")
    if metric not in known:
        errors.append(
            Diagnostic(
                f"train.validation.metric '{metric}' is not computed; use one of "
                f"{', '.join(known)} (or add it to metrics)",
                loc(("train", "validation", "metric")),
            )
        )
    if not (validation.get("every") or validation.get("every_epochs")):
        errors.append(Diagnostic("train.validation needs 'every' or 'every_epochs'", loc(("train", "validation"))))
    return errors


def _split(data: dict, model, loc: Where) -> list[Diagnostic]:
    """A split that leaves no training rows, or no validation rows where ``train.validation`` needs them:
    whatever the data when val and test take all of it, and from ``n`` where the spec gives it."""
    split = data["data"].get("split") or {}
    share = split.get("val", 0) + split.get("test", 0)
    if share >= 1:
        return [
            Diagnostic(
                f"data.split leaves no training rows: val and test take {share:g} of them", loc(("data", "split"))
            )
        ]
    rows = data_rows(data["data"])
    if rows is None or not split:
        return []
    sizes = split_sizes(rows, split)
    if not sizes["train"]:  # the words of the checks when the data loads
        return [Diagnostic(f"data: {no_training_rows(rows, sizes)}", loc(("data", "split")))]
    if data["train"].get("validation") is not None and split.get("val") and not sizes["val"]:
        return [Diagnostic(no_validation_rows(rows), loc(("data", "split", "val")))]
    return []


def _accumulate(data: dict, model, loc: Where) -> list[Diagnostic]:
    """More batches a step than an epoch holds: each step reads some batches again (a full batch: the same rows
    k times) and spans several epochs. Known where the batch is full, or the rows are in the spec."""
    t = parse(Train, data["train"])
    rows = data_rows(data["data"])
    if t.accumulate == 1 or (rows is None and t.batch_size != "full"):
        return []
    train_rows = split_sizes(rows, data["data"].get("split") or {})["train"] if rows is not None else 1
    per_epoch = batches_per_epoch(train_rows, t.batch_size, t.drop_last) if train_rows else 1
    if t.accumulate <= per_epoch:
        return []
    return [
        Diagnostic(
            f"train.accumulate: {t.accumulate} batches a step, but an epoch holds {per_epoch}: each step reads "
            f"batches again and spans {t.accumulate / per_epoch:g} epochs",
            loc(("train", "accumulate")),
            "warning",
        )
    ]


def _memory(data: dict, model, loc: Where) -> list[Diagnostic]:
    return memory_diagnostics(data, model, loc)


# each check, with the sections it reads (the model stands for model and loss, which built)
def _output_name(data: dict, model, loc: Where) -> list[Diagnostic]:
    """A classifier's predictions are written under the output's name beside its decoded label and
    probability (predict, export): the output cannot take one of those names."""
    output = data["model"]["output"]
    if make_loss(data["loss"]).decode is not None and output in DECODED:
        return [
            Diagnostic(
                f"a classifier's output cannot be named '{output}': predict and export write "
                f"{' and '.join(DECODED)} beside it",
                loc(("model", "output")),
            )
        ]
    return []


CHECKS = [
    ({"loss", "model"}, _output_name),
    ({"optimizer"}, _optimizer),
    ({"optimizer", "schedule"}, _schedule),
    ({"optimizer", "train"}, _full_batch),
    ({"metrics"}, _metrics),
    ({"data"}, _standardize),
    ({"train", "data", "metrics"}, _validation),
    ({"train", "data"}, _split),
    ({"train", "data"}, _accumulate),
    ({"train", "data", "optimizer"}, _memory),
]

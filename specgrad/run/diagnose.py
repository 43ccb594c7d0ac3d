"""``specgrad diagnose RUN_DIR``: read a finished (or stopped) run and say what went wrong, with the evidence
(steps and values from metrics.jsonl and summary.json) and a next step written as spec changes.

The rules follow the article's advice on training that goes wrong:

* exploding gradients (norms growing by orders of magnitude, NaN/Inf, skipped steps, a diverged run)
  -> a clip threshold taken from the norms observed before the growth, and the step size;
* vanishing gradients (a layer's gradient orders of magnitude below the largest for most of the run)
  -> activation, initialization, a normalization layer or a residual path;
* poor conditioning of a full-batch model linear in its parameters (the condition number of its feature
  matrix, computed through the compiled model) -> L-BFGS, Adam or standardized inputs;
* a plateau (the loss flat over the second half while the gradient is not small) -> the learning rate or
  its schedule;
* overfitting (the validation loss rising from its best while the training loss keeps falling)
  -> early stopping on the validation split, or regularization.

A rule reports only what it can show from the run; a healthy run gets no finding. The more specific
explanations stand in for the symptoms they cause: a run whose gradients explode is not also judged for
its valley or its plateau, and vanishing gradients or a narrow valley stand in for the plateau they cause.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

from specgrad.base.components import normalize
from specgrad.base.diagnostics import SpecError
from specgrad.base.fileio import parse_json, read_small_text
from specgrad.data.prepare import load_run_data_state, prepare_data
from specgrad.run.conditioning import linear_conditioning
from specgrad.run.runlog import metrics_lines
from specgrad.spec import load_spec

GROWTH = 1e3  # gradient norms this many times their early level: exploding
VANISHED = 1e-3  # a layer's norm below this fraction of the largest layer's: vanishing
MOST = 0.5  # ... for at least this fraction of the logged steps
ILL_CONDITIONED = 1e3  # cond(XᵀX) from which plain descent crawls
FLAT = 0.02  # a plateau: less than this relative improvement over the second half
STILL_STEEP = 0.5  # ... with the gradient still above this fraction of its early level (a mini-batch
# run at its noise floor keeps a stochastic gradient, typically a third of its early level)
OVERFIT = 0.1  # the validation loss this fraction above its best at the end


class DiagnoseError(Exception):
    """A run directory that cannot be read; the message says what is missing."""


@dataclass
class Finding:
    rule: str  # exploding | vanishing | conditioning | plateau | overfitting
    title: str
    evidence: list[str]
    next_step: str
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE for the change
    values: dict = field(default_factory=dict)  # the numbers behind the evidence, for tools


@dataclass
class Diagnosis:
    run_dir: str
    status: str | None
    steps: int | None
    optimizer: str
    findings: list[Finding]
    checked: list[str]  # what was looked at, or why a rule could not apply

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Run:
    """What the rules read: the logged records, the summary and the resolved spec of a run directory."""

    path: Path
    records: list[dict]
    summary: dict
    spec: dict  # the resolved spec as a mapping ({} when spec.yaml is unreadable)
    roots: tuple = ()  # where its data may be read besides the working and run directories

    @property
    def train(self) -> dict:
        return _mapping(self.spec.get("train"))

    @property
    def optimizer(self) -> dict:
        value = self.spec.get("optimizer") or {}
        return value if isinstance(value, dict) else {"type": value}


def read_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not run_dir.is_dir():
        raise DiagnoseError(f"{run_dir} is not a run directory")
    try:
        records = [record for _, record in metrics_lines(path)]
    except OSError as e:
        raise DiagnoseError(f"cannot read {path}: {e.strerror or e}") from None
    if not records:
        raise DiagnoseError(f"{path} has no records: nothing to diagnose")
    summary = _json_object(run_dir / "summary.json")
    spec = {}
    try:
        import yaml

        loaded = yaml.safe_load(read_small_text(run_dir / "spec.yaml"))
        spec = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError, yaml.YAMLError):
        pass
    return Run(run_dir, records, summary, spec)


def _json_object(path: Path) -> dict:
    try:
        value = parse_json(read_small_text(path))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def diagnose(run_dir: Path, roots=()) -> Diagnosis:
    """The findings on a run; ``roots``: folders besides the working and run directories its data may be
    read from (for the conditioning check)."""
    run = read_run(run_dir)
    run.roots = tuple(roots)
    checked: list[str] = []
    # the most specific explanation first: a run that blows up is not also judged for its valley or plateau
    findings = [f for f in (exploding(run),) if f]
    if not findings:
        findings = [f for f in (vanishing(run), conditioning(run, checked)) if f]
    if not findings:
        findings = [f for f in (plateau(run),) if f]
    findings += [f for f in (overfitting(run, checked),) if f]
    opt = run.optimizer
    described = f"{opt.get('type', '?')}" + (f" lr {opt['lr']:g}" if isinstance(opt.get("lr"), (int, float)) else "")
    return Diagnosis(
        str(run.path),
        run.summary.get("status"),
        run.summary.get("steps", run.records[-1]["step"]),
        described,
        findings,
        checked,
    )


# ------------------------------------------------------------------------------------------- helpers
def _number(value) -> float | None:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _mapping(value) -> dict:
    """A record's nested object, or {} when a damaged log holds something else there."""
    return value if isinstance(value, dict) else {}


def _series(records, key) -> list[tuple[int, float]]:
    return [(r["step"], v) for r in records if (v := _number(r.get(key))) is not None]


def _round(value: float, digits: int = 2) -> float:
    """``value`` to ``digits`` significant digits: a setting a person would write."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def _early(points: list, fraction: float = 0.1, least: int = 5) -> list:
    return points[: max(least, int(len(points) * fraction))]


# ------------------------------------------------------------------------------------------- the rules
def exploding(run: Run) -> Finding | None:
    records = run.records
    norms = _series(records, "grad_norm")
    bad = [r["step"] for r in records if r.get("loss") is None or r.get("grad_norm", 0) is None]
    skipped = [r["step"] for r in records if r.get("skipped")] or []
    diverged = run.summary.get("status") == "diverged"
    evidence: list[str] = []
    values: dict[str, float] = {}
    growth = 0.0
    if norms:
        first_step, first = norms[0]
        # the level before any growth: norms up to the first one 10x above the first
        calm = [v for _, v in norms[: next((i for i, (_, v) in enumerate(norms) if v > 10 * first), len(norms))]]
        base = statistics.median(calm or [first])
        peak_step, peak = max(norms, key=lambda p: p[1])
        growth = peak / base if base > 0 else 0.0
        losses = dict(_series(records, "loss"))
        loss_rose = peak_step in losses and losses[peak_step] > losses.get(first_step, math.inf)
        if growth >= GROWTH and loss_rose:
            per_step = growth ** (1 / max(1, peak_step - first_step))
            evidence.append(
                f"gradient norm grew from {base:.3g} (steps {first_step}-{norms[max(0, len(calm) - 1)][0]}) to "
                f"{peak:.3g} at step {peak_step}: x{growth:.2g}, about x{per_step:.3g} per step"
            )
            evidence.append(
                f"loss {losses[first_step]:.4g} at step {first_step} -> {losses[peak_step]:.4g} at step {peak_step}"
            )
            values.update(base_norm=base, peak_norm=peak, peak_step=peak_step, growth_per_step=per_step)
        elif not (bad or skipped or diverged):
            return None
        values["clip_max_norm"] = clip = _round(base)
    elif not (bad or skipped or diverged):
        return None
    if bad:
        evidence.append(
            f"non-finite loss or gradient at step {bad[0]}"
            + (f" and {len(bad) - 1} later step(s)" if len(bad) > 1 else "")
        )
        values["first_non_finite_step"] = bad[0]
    if skipped:
        evidence.append(f"{len(skipped)} step(s) skipped under on_divergence: skip, the first at step {skipped[0]}")
    if diverged:
        evidence.append(f"the run ended diverged after {run.summary.get('steps')} steps (summary.json)")
    overrides, steps_text = [], []
    if norms:
        overrides.append(f"train.clip={{max_norm: {clip:g}}}")
        steps_text.append(
            f"clip the gradient at the norm it had before the growth: train: {{clip: {{max_norm: {clip:g}}}}}"
        )
    lr = _number(run.optimizer.get("lr"))
    per_step = values.get("growth_per_step")
    if lr and per_step and per_step > 1:
        # plain descent on a quadratic multiplies the gradient by |1 - lr λ| per step: growth r means
        # λ_max ≈ (1 + r) / lr, and the largest stable step size is 2 / λ_max
        limit = 2 * lr / (1 + per_step)
        new_lr = _round(limit / 2)
        values.update(lr=lr, stable_lr_limit=limit, suggested_lr=new_lr)
        overrides.append(f"optimizer.lr={new_lr:g}")
        steps_text.append(
            f"and lower the step size: growth x{per_step:.3g} per step puts the stability limit "
            f"2/λmax near lr {limit:.2g} (now {lr:g}); optimizer: {{lr: {new_lr:g}}}"
        )
    elif lr:
        new_lr = _round(lr / 10)
        overrides.append(f"optimizer.lr={new_lr:g}")
        steps_text.append(f"and try a smaller step size: optimizer: {{lr: {new_lr:g}}}")
    return Finding(
        "exploding",
        "exploding gradients",
        evidence,
        "; ".join(steps_text) or "lower optimizer.lr and add train.clip",
        overrides,
        values,
    )


def _layer(name: str) -> str:
    """The layer a parameter belongs to: ``net.0.weight`` -> ``net.0``; a lone parameter is its own."""
    return name.rsplit(".", 1)[0] if "." in name else name


def vanishing(run: Run) -> Finding | None:
    ratios: dict[str, list[float]] = {}
    norms: dict[str, list[float]] = {}
    tops: list[float] = []
    counted = 0
    for r in run.records:
        per_param = _mapping(r.get("grad_norms"))
        values = {n: v for n, raw in per_param.items() if (v := _number(raw)) is not None}
        if not values or len(values) < len(per_param):  # a norm missing or not finite: not counted
            continue
        layers: dict[str, float] = {}
        for name, v in values.items():
            layers[_layer(name)] = layers.get(_layer(name), 0.0) + v * v
        if len(layers) < 2:
            return None
        top = math.sqrt(max(layers.values()))
        if top == 0:
            continue
        counted += 1
        tops.append(top)
        for layer, sq in layers.items():
            ratios.setdefault(layer, []).append(math.sqrt(sq) / top)
            norms.setdefault(layer, []).append(math.sqrt(sq))
    if not counted:
        return None
    # a step counts only while the largest layer still learns: once everything has converged (a bias at its
    # optimum next to a weight that is not), tiny ratios say nothing about depth
    early = statistics.median(tops[: max(5, len(tops) // 10)])
    active = [top >= 1e-3 * early for top in tops]
    faint = {layer: sum(x < VANISHED and a for x, a in zip(rs, active)) / counted for layer, rs in ratios.items()}
    weak = [layer for layer, share in faint.items() if share >= MOST]
    if not weak:
        return None
    strongest = max(norms, key=lambda layer: statistics.median(norms[layer]))
    weak.sort(key=lambda layer: statistics.median(ratios[layer]))
    evidence = []
    for layer in weak[:3]:
        evidence.append(
            f"{layer}: gradient norm below {VANISHED:g} of the largest layer's in {faint[layer]:.0%} of "
            f"{counted} logged steps (median {statistics.median(norms[layer]):.2g} vs "
            f"{statistics.median(norms[strongest]):.2g} for {strongest}; ratio "
            f"{statistics.median(ratios[layer]):.1e})"
        )
    if len(weak) > 3:
        evidence.append(f"and {len(weak) - 3} more layer(s): {', '.join(weak[3:])}")
    order = list(norms)
    evidence.append(
        "median gradient norm by layer, in declaration order: "
        + ", ".join(f"{layer} {statistics.median(norms[layer]):.1e}" for layer in order)
    )
    overrides, lead = [], ""
    dead = [layer for layer in weak if statistics.median(norms[layer]) == 0]
    lr = _number(run.optimizer.get("lr"))
    if dead:
        # exactly zero, not small: every unit feeding the layer is off (relus pushed below zero for every input)
        evidence.append(
            f"{', '.join(dead)}: exactly zero gradient in most steps: their relu-like units are inactive "
            'for every sample ("dead"), which a too-large step typically causes'
        )
        if lr:
            overrides.append(f"optimizer.lr={_round(lr / 10):g}")
        lead = (
            "revive the dead layers: a smaller step"
            + (f", optimizer: {{lr: {_round(lr / 10):g}}}" if lr else "")
            + ", or activation: leaky_relu (never exactly flat); "
        )
    nodes = _mapping(run.spec.get("model")).get("nodes")
    for i, entry in enumerate(nodes if isinstance(nodes, list) else []):
        if isinstance(entry, dict) and len(entry) == 1:
            ((name, body),) = entry.items()
            if isinstance(body, dict) and body.get("layer") == "mlp" and body.get("activation") == "sigmoid":
                overrides.append(f"model.nodes.{i}.{name}.activation=relu")
                lead = (
                    f"node '{name}' stacks sigmoids, whose derivative is at most 1/4 per layer: use activation: "
                    "relu (or tanh) there, which also switches its init to he_uniform; "
                )
    next_step = (
        lead + "otherwise give each layer a path for the gradient: a normalization layer ({layer: "
        "layernorm} or {layer: batchnorm}) between layers, residual blocks ({layer: residual, body: [...]}, "
        "as models/residual_mlp.yaml), or an init matched to the activation (init: he_uniform for relu, "
        "glorot_uniform for tanh)"
    )
    return Finding(
        "vanishing",
        "vanishing gradients",
        evidence,
        next_step,
        overrides,
        {
            "layers": {
                layer: {"share_below": faint[layer], "median_ratio": statistics.median(ratios[layer])} for layer in weak
            },
            "largest": strongest,
        },
    )


def conditioning(run: Run, checked: list[str]) -> Finding | None:
    """The feature matrix of a full-batch model linear in its parameters, through the compiled model."""
    if run.train.get("batch_size", "full") != "full":
        checked.append("conditioning: not checked (mini-batch training)")
        return None
    measured = _measure_conditioning(run, checked)
    if measured is None:
        return None
    c = measured
    losses = _series(run.records, "loss")
    final = _number(_mapping(run.summary.get("train")).get("loss")) or (losses[-1][1] if losses else None)
    checked.append(f"conditioning: the model is linear in its {c.columns} parameters; cond(XᵀX) = {c.condition:.3g}")
    if c.condition < ILL_CONDITIONED or final is None:
        return None
    opt_type = run.optimizer.get("type")
    evidence = [
        f"the model is linear in its parameters: predictions = f(0) + X θ with X of {c.rows} x {c.columns} "
        f"(read through the compiled model); cond(XᵀX) = {c.condition:.3g}, so the loss is a valley "
        f"{math.sqrt(c.condition):.3g} times narrower across than along"
    ]
    values = {"condition": c.condition, "scaled_condition": c.scaled_condition, "final_loss": final}
    if c.optimum_loss is not None:
        gap = final / c.optimum_loss - 1 if c.optimum_loss > 0 else math.inf
        values.update(optimum_loss=c.optimum_loss, gap=gap)
        if gap < 1e-3:
            checked.append(f"conditioning: at the least-squares optimum ({final:.6g} vs {c.optimum_loss:.6g})")
            return None
        evidence.append(
            f"final train loss {final:.5g} is {final / c.optimum_loss:.3g}x the least-squares optimum "
            f"{c.optimum_loss:.5g} (numpy lstsq on the same features)"
        )
    elif opt_type not in ("sgd", None):
        return None
    if len(losses) >= 4:
        (s0, l0), (s1, l1) = losses[len(losses) // 2], losses[-1]
        evidence.append(
            f"plain descent crawls: loss {l0:.5g} at step {s0} -> {l1:.5g} at step {s1}; it needs about "
            f"cond(XᵀX) = {c.condition:.2g} steps per factor e along the narrow direction"
        )
    steps = 50
    overrides = ["optimizer={type: lbfgs, lr: 1.0, max_iter: 1, max_eval: 10}", f"train.steps={steps}"]
    options = [
        f"optimizer: {{type: lbfgs, lr: 1.0, max_iter: 1, max_eval: 10}} with train.steps: {steps} (L-BFGS "
        "models the curvature and needs about as many iterations as parameters; models/poly_lbfgs.yaml)",
        "optimizer: {type: adam, lr: 0.1} with schedule: {type: cosine} (per-coordinate step sizes; "
        "models/poly_adam.yaml)",
    ]
    if c.scaled_condition < c.condition / 10:
        options.insert(
            0,
            f"data: {{standardize: [<input>]}}: the columns differ in scale, and scaled to one norm "
            f"cond(XᵀX) falls to {c.scaled_condition:.3g}",
        )
    else:
        options.append(
            f"standardizing the inputs helps little here (columns scaled to one norm still give "
            f"{c.scaled_condition:.3g}): the columns are nearly collinear, not badly scaled"
        )
    return Finding(
        "conditioning",
        "poor conditioning (a narrow valley)",
        evidence,
        "use a method that the valley does not slow down:\n" + "\n".join(f"- {o}" for o in options),
        overrides,
        values,
    )


def _measure_conditioning(run: Run, checked: list[str]):

    try:
        spec = load_spec(run.path / "spec.yaml", roots=run.roots)
        base_dir, standardizer = load_run_data_state(run.path, spec)
        fields = prepare_data(spec, base_dir, standardizer).splits["train"]
    except (SpecError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        checked.append(f"conditioning: not checked (cannot load the run's spec and data: {first})")
        return None
    measured = linear_conditioning(spec.model, fields, normalize(spec.data["loss"])["type"])
    if measured is None:
        checked.append("conditioning: not checked (the model is not linear in its parameters, or too large)")
    return measured


def plateau(run: Run) -> Finding | None:
    losses, norms = _series(run.records, "loss"), _series(run.records, "grad_norm")
    if len(losses) < 10 or len(norms) < 10:
        return None
    half = losses[len(losses) // 2 :]
    tenth = max(1, len(half) // 10)
    start = statistics.median(v for _, v in half[:tenth])
    end = statistics.median(v for _, v in half[-tenth:])
    improvement = (start - end) / max(abs(start), 1e-300)
    early = statistics.median(v for _, v in _early(norms))
    late = statistics.median(v for _, v in norms[len(norms) // 2 :])
    if improvement >= FLAT or early <= 0 or late < STILL_STEEP * early:
        return None
    rises = sum(b[1] > a[1] for a, b in pairwise(half)) / max(1, len(half) - 1)
    evidence = [
        f"loss {start:.5g} around step {half[0][0]} -> {end:.5g} around step {half[-1][0]}: "
        f"{'only ' + format(improvement, '.2%') + ' lower' if improvement > 0 else 'no lower'} over the "
        f"second half of the run",
        f"the gradient norm is still {late:.3g} (median of the second half; {early:.3g} early): the loss is "
        f"not at a minimum",
    ]
    lr = _number(run.optimizer.get("lr"))
    values = {"improvement": improvement, "early_grad_norm": early, "late_grad_norm": late, "rising_share": rises}
    if rises > 0.3:
        evidence.append(f"the loss rises in {rises:.0%} of the steps of the second half: the steps overshoot")
        schedule = run.spec.get("schedule") or "constant"
        decays = (schedule if isinstance(schedule, str) else _mapping(schedule).get("type", "constant")) != "constant"
        overrides = ([] if decays else ["schedule={type: cosine, min_lr: 0.0}"]) + (
            [f"optimizer.lr={_round(lr / 3):g}"] if lr else []
        )
        next_step = (
            "the step size is too large for the bottom of the valley: "
            + ("" if decays else "decay it, schedule: {type: cosine}, or ")
            + (f"lower it, optimizer: {{lr: {_round(lr / 3):g}}}" if lr else "lower optimizer.lr")
        )
    else:
        evidence.append("the loss falls steadily but slowly: each step is too short")
        overrides = [f"optimizer.lr={_round(lr * 10):g}"] if lr else []
        next_step = (
            "raise the learning rate"
            + (f" tenfold, optimizer: {{lr: {_round(lr * 10):g}}}" if lr else "")
            + " (diagnose again: exploding gradients mean it went too far), or warm up to it, schedule: "
            "{type: cosine, warmup: {steps: 100}}"
        )
    return Finding("plateau", "the loss has plateaued", evidence, next_step, overrides, values)


def overfitting(run: Run, checked: list[str]) -> Finding | None:
    validations = [
        (r["step"], v)
        for r in run.records
        if r.get("val") and (v := _number(_mapping(r.get("val")).get("loss"))) is not None
    ]
    if len(validations) < 3:
        if not validations:
            checked.append("overfitting: not checked (no validation in the log: set train.validation)")
        return None
    best_step, best = min(validations, key=lambda p: p[1])
    last_step, last = validations[-1]
    losses = dict(_series(run.records, "loss"))
    train_at_best, train_last = losses.get(best_step), losses.get(last_step)
    if (
        best <= 0
        or last <= best * (1 + OVERFIT)
        or train_at_best is None
        or train_last is None
        or train_last >= train_at_best
    ):
        return None
    evidence = [
        f"validation loss: best {best:.4g} at step {best_step}, {last:.4g} at step {last_step} "
        f"(+{last / best - 1:.0%})",
        f"training loss meanwhile {train_at_best:.4g} -> {train_last:.4g}: the model keeps fitting the "
        f"training split and generalizes worse",
        f"final gap: validation loss {last / train_last:.3g}x the training loss",
    ]
    regularize = (
        "regularize: weight decay (optimizer: {weight_decay: 0.01}, or type adamw), a dropout layer, "
        "a smaller model or more data"
    )
    decay = [] if run.optimizer.get("type") == "lbfgs" else ["optimizer.weight_decay=0.01"]
    if run.summary.get("stopped_early"):
        # early stopping did its job: the best checkpoint is kept; what remains is advice, not an alarm
        checked.append(
            f"overfitting: the validation loss rose {last / best - 1:.0%} from its best (step {best_step}) "
            f"before the run stopped early at step {last_step}, which keeps the best checkpoint; to "
            f"narrow the gap, {regularize}" + (f" (--set '{decay[0]}')" if decay else "")
        )
        return None
    every = (run.train.get("validation") or {}).get("every") or (validations[1][0] - validations[0][0])
    rise_validations = sum(1 for s, _ in validations if s > best_step)
    patience = max(2, min(10, rise_validations // 3))
    overrides = [f"train.validation.patience={patience}", "train.checkpoint.keep_best=1"]
    next_step = (
        f"stop early and keep the best checkpoint: train: {{validation: {{every: {every}, patience: "
        f"{patience}}}, checkpoint: {{keep_best: 1}}}} (here it would have kept step {best_step}); or " + regularize
    )
    return Finding(
        "overfitting",
        "overfitting (a growing validation gap)",
        evidence,
        next_step,
        overrides,
        _overfit_values(best_step, best, last, train_at_best, train_last),
    )


def _overfit_values(best_step, best, last, train_at_best, train_last) -> dict:
    return {
        "best_step": best_step,
        "best_val_loss": best,
        "final_val_loss": last,
        "train_loss_at_best": train_at_best,
        "final_train_loss": train_last,
    }


# ------------------------------------------------------------------------------------------- output
def format_text(d: Diagnosis) -> str:
    lines = [f"{d.run_dir}: {d.optimizer}, {d.steps} steps, {d.status or 'no summary'}"]
    if not d.findings:
        lines.append("no problems found: gradients neither exploding nor vanishing, no plateau, no validation gap")
    for f in d.findings:
        lines.append("")
        lines.append(f"warning: {f.title}")
        lines.extend(f"  evidence: {e}" for e in f.evidence)
        lines.append("  next step: " + f.next_step.replace("\n", "\n    "))
        if f.overrides:
            lines.append(
                f"  try: specgrad train {Path(d.run_dir) / 'spec.yaml'} "
                + " ".join(f"--set '{o}'" for o in f.overrides)
            )
    if d.checked:
        lines.append("")
        lines.extend(f"note: {c}" for c in d.checked)
    return "\n".join(lines)

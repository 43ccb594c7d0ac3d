"""Build: a validated spec's model and loss become one graph with shapes inferred, then its backward pass.

A node is a formula (``y_hat: phi @ k``), an op call (``{op: matmul, args: [phi, k]}``) or a layer
(``{layer: linear, input: x, units: 128}``), which expands into primitive ops and creates its parameters
``<node>.<param>``. Layers that behave differently when training (dropout, batchnorm) make the model be
built twice: once in train mode, which also yields the updated non-trainable state, and once in eval mode
for evaluation and prediction.

Every problem is reported with the location of the spec text that caused it, and building goes on past
an error (nodes that depend on a broken node are skipped silently), so one pass reports them all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from specgrad.base.components import normalize
from specgrad.base.diagnostics import Diagnostic, Location, SpecError, did_you_mean
from specgrad.base.rng import batch_key
from specgrad.engine.autodiff import gradients
from specgrad.engine.ir import DEFAULT_DTYPE, Graph, Node, ancestors
from specgrad.engine.ops.registry import ShapeError, fmt_shape
from specgrad.engine.plan import Plan
from specgrad.model.formula import (
    FormulaError,
    Scope,
    apply_call,
    build_formula,
    parse_formula,
    undefined,
)
from specgrad.model.init import INITIALIZERS, fans_of, init_problem
from specgrad.model.layers import LAYERS
from specgrad.model.layers.base import (
    Collected,
    Context,
    DataParallel,
    LayerError,
    ParamInit,
    arity,
)
from specgrad.model.losses import DEFAULT_TARGET, LossError, make_loss, penalty_term

BATCH = "B"  # the symbolic batch dimension
SHARD_INPUTS = ("shard:data_weight", "shard:penalty_weight")  # ':' keeps them apart from data fields


@dataclass
class Forward:
    """The model's graph in one mode, and the nodes a caller feeds: data fields, parameters, state, key."""

    graph: Graph
    inputs: dict[str, Node]  # data fields fed each batch: model inputs, then the loss target
    params: dict[str, Node]
    state: dict[str, Node]  # non-trainable state (batchnorm's running statistics)
    rng: Node | None  # the per-step random key, where a layer draws random numbers
    prediction: Node
    loss: Node
    shard: tuple[Node, Node] | None  # a data-parallel train graph's (data weight, penalty weight) inputs

    @property
    def feeds(self) -> list[Node]:
        return [
            *self.inputs.values(),
            *self.params.values(),
            *self.state.values(),
            *([self.rng] if self.rng is not None else []),
            *(self.shard or ()),
        ]

    def plan(self, outputs) -> Plan:
        """A plan called with ``feed(...)``'s values (just data fields and parameters for a stateless model).
        Compiled once per set of outputs and kept: evaluation asks for the same plan at every validation."""
        plans = self.__dict__.setdefault("_plans", {})
        key = tuple(n.id for n in outputs)
        if key not in plans:
            plans[key] = Plan(outputs, self.feeds, data=list(self.inputs.values()))
        return plans[key]

    def feed(self, fields: dict, params: dict, state: dict | None = None, key=None) -> list:
        """Values in ``feeds`` order; fields the outputs do not need (the target, for a prediction) may be absent.
        (Not for a data-parallel train graph, which ``TrainStep`` feeds.)"""
        state = state or {}
        return [
            *(fields.get(n) for n in self.inputs),
            *(params[n] for n in self.params),
            *(state[n] for n in self.state),
            *([key] if self.rng is not None else []),
        ]


@dataclass
class Model(Forward):
    """The train-mode graph with its gradients, plus what a runner needs around it."""

    inits: dict[str, ParamInit]  # param name -> initializer settings and fans
    target: str  # the data field the loss compares the prediction with
    grads: list[Node]  # same order as params
    state_inits: dict[str, dict]  # state name -> initializer settings of its first value
    state_updates: dict[str, Node]  # state name -> its value after a training step (train graph)
    eval: Forward  # the eval-mode graph (the train graph when no layer depends on the mode)
    warnings: list[Diagnostic]


MAX_ENTRIES = 2**62  # entries of one parameter: numpy's sizes are 64-bit


def init_params(model: Model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Initial parameter values, drawn in declaration order from ``rng``."""
    out = {}
    for name, node in model.params.items():
        p = model.inits[name]
        out[name] = _as_declared(INITIALIZERS.create(p.settings)(node.shape, rng, node.dtype, p.fans), node)
    return out


def init_state(model: Model) -> dict[str, np.ndarray]:
    """First values of the non-trainable state (initializers of state are deterministic: no generator)."""
    return {
        name: _as_declared(
            INITIALIZERS.create(model.state_inits[name])(node.shape, None, node.dtype, fans_of(node.shape)), node
        )
        for name, node in model.state.items()
    }


def _as_declared(value, node: Node) -> np.ndarray:
    """A fresh C-contiguous array of exactly the node's shape and dtype. Not ``np.ascontiguousarray``:
    it turns a 0-d array (a parameter declared ``shape: []``) into shape [1], a different model."""
    out = np.array(value, dtype=node.dtype, order="C")
    if out.shape != tuple(node.shape):
        raise AssertionError(f"{node.name}: initializer made shape {list(out.shape)}, declared {list(node.shape)}")
    return out


class TrainStep:
    """A training step's plan and the model state it carries from step to step: it feeds a batch, the
    parameters, the state and the step's random key, keeps the updated state, and returns loss and gradients.
    A runner saves ``state_arrays()`` in its checkpoints and gives them back to ``load_state``."""

    def __init__(self, model: Model, seed: int, own_plan: bool = False):
        self.model, self.seed = model, seed
        self.state = init_state(model)
        outputs = [model.loss, *model.grads, *model.state_updates.values()]
        # ``own_plan``: a plan not shared with the model's other users, which a trainer may have write the
        # gradients into its own buffers (Plan.write_outputs_into); else the model's compiled plan
        self.plan = Plan(outputs, model.feeds, data=list(model.inputs.values())) if own_plan else model.plan(outputs)
        self.stateless = not model.state and not model.state_updates and model.rng is None

    def __call__(self, batch: list, params: list, step: int, shard=None):
        """Loss and gradients of batch ``step`` (its index in the run). In a data-parallel run ``batch`` is
        this process's ``shard`` of it (``specgrad.run.distributed.Shard``: where its rows start in the whole
        batch, and the weights of its loss terms), and the loss and gradients are its share of the batch's."""
        model = self.model
        if self.stateless and model.shard is None:  # no state, key or shard weights: loss and grads alone
            loss, *grads = self.plan(*batch, *params)
            return loss, grads
        key = [batch_key(self.seed, step, shard.first_row if shard else 0)] if model.rng is not None else []
        weights = [np.asarray(w, model.loss.dtype) for w in shard.weights] if model.shard is not None else []
        loss, *rest = self.plan(*batch, *params, *self.state.values(), *key, *weights)
        n = len(model.grads)
        # copied, so the kept state never aliases an array the plan was fed (an update may be its input)
        self.state.update((name, np.array(value)) for name, value in zip(model.state_updates, rest[n:]))
        return loss, rest[:n]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The model state by name (where a runner keeps it is the runner's business)."""
        return dict(self.state)

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the state from name -> array; raises KeyError or ValueError when they do not fit."""
        for name, value in self.state.items():
            saved = arrays[name]
            if saved.shape != value.shape:
                raise ValueError(f"state {name} has shape {list(saved.shape)}, the model's {list(value.shape)}")
            self.state[name] = saved.astype(value.dtype, copy=False)


def build_model(
    spec: dict,
    where: Callable[[tuple], Location],
    formula_loc: Callable | None = None,
    parallel: DataParallel | None = None,
) -> Model:
    """Compile the ``model`` and ``loss`` sections of a validated spec; raises SpecError with every problem.

    ``where(path)`` gives the location of the spec value at ``path``; ``formula_loc(path, col)`` the location
    of a column inside a formula string (defaults to the string's own location). With ``parallel``, the train
    graph is one process's part of a data-parallel step (its eval graph is the usual one).
    """
    formula_loc = formula_loc or (lambda path, col: where(path))
    train = _Builder(spec, where, formula_loc, training=True, parallel=parallel)
    forward = train.build()
    if train.errors or forward is None:
        raise SpecError(train.errors + train.warnings)
    evaluation: Forward | None = forward
    if train.collected.mode_dependent or parallel:  # a data-parallel train graph is no eval graph
        in_eval = _Builder(spec, where, formula_loc, training=False)
        evaluation = in_eval.build()
        if in_eval.errors:  # a layer that builds in train mode but not in eval mode
            raise SpecError(in_eval.errors)
    assert evaluation is not None
    settings = spec.get("train")
    grads = gradients(
        forward.loss, list(forward.params.values()), remat=isinstance(settings, dict) and settings.get("remat", False)
    )
    c = train.collected
    assert train.target is not None  # every build names the loss's target
    forward_fields = {f.name: getattr(forward, f.name) for f in dataclasses.fields(Forward)}
    return Model(
        **forward_fields,
        inits=c.inits,
        target=train.target,
        grads=grads,
        state_inits=c.state_inits,
        state_updates=c.state_updates,
        eval=evaluation,
        warnings=train.warnings,
    )


class _Skip(Exception):
    """A node uses a name whose definition already failed: reported once, at the definition."""


_BROKEN = object()  # the implicit input of a layer whose preceding node failed


class _Builder:
    """One build of a spec's model in one mode, collecting every error on the way."""

    def __init__(self, spec, where, formula_loc, training: bool, parallel: DataParallel | None = None):
        self.spec, self.where, self.formula_loc, self.training = spec, where, formula_loc, training
        self.parallel = parallel
        self.shard: tuple[Node, Node] | None = None
        self.graph = Graph(spec.get("dtype", DEFAULT_DTYPE))
        self.collected = Collected()
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.target = None

    def build(self) -> Forward | None:
        spec, graph, where, errors = self.spec, self.graph, self.where, self.errors
        m = spec["model"]
        # later nodes are known by name, so a use before the definition is reported as such
        scope = Scope(
            later={name: where(("model", "nodes", i, name)) for i, entry in enumerate(m["nodes"]) for name in entry}
        )
        for name, declared in m["inputs"].items():
            shape, dtype = (
                (declared, None)
                if isinstance(declared, list)  # {shape, dtype}: integer ids
                else (declared["shape"], declared.get("dtype"))
            )
            with graph.at(where(("model", "inputs", name, "shape"))):  # where its shape is written, or [...] itself
                scope[name] = graph.input(name, (BATCH, *shape), dtype)
        broken: set[str] = set()  # names whose definition failed: their uses are not reported again
        for name, p in (m.get("params") or {}).items():
            if name in scope:
                errors.append(Diagnostic(f"'{name}' is already defined as an input", where(("model", "params", name))))
                continue
            problem = init_problem(normalize(p.get("init", "zeros")), p["shape"])
            at = where(("model", "params", name, "init"))
            if math.prod(p["shape"]) >= MAX_ENTRIES:  # numpy could not even describe it (the memory check is later)
                problem = f"{math.prod(p['shape'])} entries, more than an array can hold ({MAX_ENTRIES})"
                at = where(("model", "params", name, "shape"))
            if problem:
                errors.append(Diagnostic(f"parameter '{name}': {problem}", at))
                broken.add(name)
                continue
            # located at its shape: what a shape mismatch or the memory check names, wherever it was written
            with graph.at(where(("model", "params", name, "shape"))):
                scope[name] = graph.param(name, tuple(p["shape"]))
            self.collected.inits[name] = ParamInit(normalize(p.get("init", "zeros")), fans_of(p["shape"]))
        first = next(iter(scope.values())) if len(m["inputs"]) == 1 else None
        self.nodes(m["nodes"], ("model", "nodes"), scope, broken, "", first, ())

        prediction = loss = None
        out_name = m["output"]
        if out_name in broken:
            pass
        elif out_name not in scope:
            errors.append(
                Diagnostic(
                    f"output '{out_name}' is not defined{did_you_mean(out_name, scope)}", where(("model", "output"))
                )
            )
        elif not scope[out_name].shape or scope[out_name].shape[0] != BATCH:  # the loss compares it row by row
            shape = fmt_shape(scope[out_name].shape)
            errors.append(
                Diagnostic(
                    f"output '{out_name}' is {shape}: a prediction has one row per sample, the batch dimension B "
                    "first (an output made of parameters alone has none)",
                    where(("model", "output")),
                )
            )
        else:
            prediction = scope[out_name]

        loss_settings = normalize(spec["loss"])
        self.target = target_name = loss_settings.get("target", DEFAULT_TARGET)
        if prediction is not None:
            with graph.at(where(("loss",))):
                if target_name in scope and scope[target_name].op != "input":
                    errors.append(
                        Diagnostic(
                            f"loss target '{target_name}' must be a data field, not a model node", where(("loss",))
                        )
                    )
                else:
                    try:
                        loss_fn = make_loss(loss_settings)
                        declared = loss_fn.target_of(prediction)  # e.g. int64 labels for cross_entropy
                        target = scope.get(target_name) or graph.input(target_name, declared.shape, declared.dtype)
                        loss = (
                            self.shard_loss(loss_fn, prediction, target)
                            if self.parallel
                            else loss_fn(prediction, target)
                        )
                        loss.name = loss.name or "loss"
                    except (ShapeError, LossError) as e:
                        errors.append(Diagnostic(f"loss: {e}", where(("loss",))))
            if loss is not None and loss.shape != ():
                errors.append(
                    Diagnostic(f"the loss must be a scalar, got shape {fmt_shape(loss.shape)}", where(("loss",)))
                )
                loss = None

        if loss is not None:
            reaching = {n.id for n in ancestors([loss])}
            for name, p in graph.params.items():
                if p.id not in reaching:
                    at = where(("model", "params", name)) if name in (m.get("params") or {}) else p.loc  # or a layer's
                    self.warnings.append(Diagnostic(f"parameter '{name}' does not affect the loss", at, "warning"))
        if errors or prediction is None or loss is None:  # (a broken output or loss was reported already)
            return None
        c = self.collected
        fed_by_run = {c.key, *(self.shard or ())}
        data = {n: node for n, node in graph.inputs.items() if n not in c.state and node not in fed_by_run}
        return Forward(graph, data, dict(graph.params), dict(c.state), c.key, prediction, loss, self.shard)

    def shard_loss(self, loss_fn, prediction: Node, target: Node) -> Node:
        """One process's share of a data-parallel batch's loss, ``data_weight * loss(shard) + penalty_weight *
        penalties``, so that the shares (and their gradients) of all processes sum to the batch's. The run
        feeds the weights: rows / batch rows for a loss that is a mean over the batch, 1 for a sum (sse); the
        penalties, which do not depend on the batch, weigh 1 in one process and 0 in the others."""
        graph = prediction.graph
        self.shard = data_weight, penalty_weight = tuple(
            graph.input(name, (), prediction.dtype) for name in SHARD_INPUTS
        )
        loss = loss_fn.build(prediction, target) * data_weight
        for penalty in loss_fn.penalties:
            loss = loss + penalty_term(graph.params, penalty) * penalty_weight
        return loss

    def nodes(self, entries, path, scope, broken, prefix, previous, overrides) -> Node | None:
        """Build node definitions in order into ``scope``; returns the last one (None if it failed).
        ``previous`` is the implicit input of a leading layer that names none."""
        for i, entry in enumerate(entries):
            ((name, body),) = entry.items()
            here = path + (i, name)
            if name in scope or name in broken:
                kind = {"input": "an input", "param": "a parameter"}.get(str(getattr(scope.get(name), "op", "")))
                self.errors.append(
                    Diagnostic(
                        f"'{name}' is already defined as {kind}" if kind else f"'{name}' is defined twice",
                        self.where(here),
                    )
                )
                previous = _BROKEN
                continue
            try:
                with self.graph.at(self.where(here)):
                    scope[name] = previous = self.node(body, scope, broken, prefix + name, previous, here, overrides)
                    if previous.name is None:  # named after the spec's node, for `specgrad graph`
                        previous.name = prefix + name
            except _Skip:
                broken.add(name)
                previous = _BROKEN
            except FormulaError as e:
                broken.add(name)
                previous = _BROKEN
                loc = self.formula_loc(here, e.col) if isinstance(body, str) else self.where(here)
                self.errors.append(Diagnostic(f"node '{name}': {e}", loc))
            except (LayerError, ShapeError) as e:
                broken.add(name)
                previous = _BROKEN
                self.errors.append(Diagnostic(f"node '{name}': {e}", self.where(here + getattr(e, "at", ()))))
        return None if previous is _BROKEN else previous

    def node(self, body, scope, broken, full_name, previous, here, overrides) -> Node:
        if isinstance(body, str):
            if _names_in(body) & broken:
                raise _Skip
            return build_formula(body, self.graph, scope)
        if "layer" in body:
            return self.layer(body, scope, broken, full_name, previous, here, overrides)
        args = [self.resolve(a, scope, broken) if isinstance(a, str) else a for a in body.get("args", [])]
        attrs = {k: v for k, v in body.items() if k not in ("op", "args")}
        return apply_call(self.graph, body["op"], args, attrs, labels={n.id: k for k, n in scope.items()})

    def resolve(self, name: str, scope, broken) -> Node:
        if name in broken:
            raise _Skip
        if name not in scope:
            raise undefined(name, scope)
        return scope[name]

    def layer(self, body, scope, broken, full_name, previous, here, overrides) -> Node:
        settings = {k: v for k, v in body.items() if k not in ("layer", "input", "inputs", "init")}
        kind = body["layer"]
        factory = LAYERS[kind].factory
        if "input" in body and "inputs" in body:
            raise LayerError("give either 'input' or 'inputs', not both", at=("inputs",))
        names = body.get("inputs") or ([body["input"]] if "input" in body else None)
        if names is None:
            if previous is _BROKEN:
                raise _Skip
            if previous is None:
                raise LayerError("no input: name one with 'input: NAME'")
            inputs = [previous]
        else:
            inputs = [self.resolve(n, scope, broken) for n in names]
        fewest, most = arity(factory)
        if not fewest <= len(inputs) <= (most if most is not None else len(inputs)):
            takes = f"{fewest}" if fewest == most else f"{fewest} to {most}" if most else f"at least {fewest}"
            raise LayerError(f"layer {kind} takes {takes} input(s), got {len(inputs)}")
        init = body.get("init") or {}
        overrides = overrides + ((full_name, init),)

        def build_nodes(entries, x, key="body"):
            """A layer's nested node definitions (a residual block's body), fed ``x``; names stay local."""
            last = self.nodes(entries, here + (key,), dict(scope), set(broken), full_name + ".", x, overrides)
            if last is None:
                raise _Skip
            return last

        ctx = Context(self.graph, full_name, self.training, self.collected, overrides, build_nodes, self.parallel)
        out = factory(ctx, *inputs, **settings)
        unused = sorted(k for k in init if (full_name, k) not in self.collected.used_overrides)
        if unused:
            own = sorted(n[len(full_name) + 1 :] for n in self.collected.inits if n.startswith(full_name + "."))
            names = sorted({*own, *(n.rsplit(".", 1)[-1] for n in own)})
            hint = did_you_mean(unused[0], names) or f" (it has {', '.join(own) or 'none'})"
            raise LayerError(
                f"init names '{unused[0]}', which is not a parameter of this layer{hint}", at=("init", unused[0])
            )
        return out


def _names_in(text: str) -> set[str]:
    import ast

    try:
        return {n.id for n in ast.walk(parse_formula(text)) if isinstance(n, ast.Name)}
    except FormulaError:
        return set()

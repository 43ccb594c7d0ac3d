"""The layer registry and what a layer sees while it expands into primitive ops.

A layer is a function ``layer(ctx, *inputs, **settings) -> Node`` registered in ``LAYERS`` with the JSON
Schema of its settings. It builds its output from registered ops on its input nodes and asks ``ctx`` for
everything else: parameters (named ``<node>.<param>``, initialized by the layer's default initializer
unless the spec overrides it), non-trainable state (batchnorm's running statistics), the per-step random
key (dropout) and whether it is being built for training or for evaluation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from specgrad.base.components import NAME, Registry, normalize
from specgrad.engine.ir import Graph, Node
from specgrad.model.init import INITIALIZERS, Fans, fans_of, init_problem

LAYERS = Registry(
    "layer",
    tag="layer",
    common={
        "input": {**NAME, "description": "the node fed to the layer (default: the node defined just before)"},
        "inputs": {
            "type": "array",
            "items": NAME,
            "minItems": 1,
            "description": "the nodes fed to a layer that takes several",
        },
        "init": {
            "type": "object",
            "propertyNames": {"type": "string"},
            "additionalProperties": INITIALIZERS.schema(),
            "description": "initializers by parameter name (weight, bias, ...), overriding the layer's",
        },
    },
)


class LayerError(ValueError):
    """A layer that cannot be built from its settings and inputs; the message says why, and ``at`` is the
    path of the offending setting inside the node's definition (e.g. ``("init", "wieght")``), if one is."""

    def __init__(self, message: str, at: tuple = ()):
        super().__init__(message)
        self.at = at


def arity(layer: Callable) -> tuple[int, int | None]:
    """(fewest, most) input nodes a layer function takes: its positional parameters after ``ctx``."""
    params = list(inspect.signature(layer).parameters.values())[1:]
    positional = [p for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return len(positional), None
    return sum(p.default is p.empty for p in positional), len(positional)


@dataclass(frozen=True)
class ParamInit:
    """How a parameter gets its first value: initializer settings and the fans the layer states."""

    settings: dict
    fans: Fans


@dataclass
class Collected:
    """What one build of a model gathers besides the graph: parameters' initializers, state and its updates."""

    inits: dict[str, ParamInit] = field(default_factory=dict)
    state_inits: dict[str, dict] = field(default_factory=dict)
    state: dict[str, Node] = field(default_factory=dict)
    state_updates: dict[str, Node] = field(default_factory=dict)
    key: Node | None = None
    key_users: int = 0  # layers that asked for a key so far (each gets a salt of its own)
    used_overrides: set = field(default_factory=set)  # (node, key) pairs of an ``init`` that named a parameter
    mode_dependent: bool = False  # some layer read ``ctx.training``: train and eval graphs differ


@dataclass(frozen=True)
class DataParallel:
    """How a train graph is built for one process of a data-parallel run (docs/distributed.md): the loss
    becomes the process's weighted share of the batch's, and with ``sync_batchnorm`` batchnorm takes its
    statistics over the whole batch (collectives in the graph) rather than over the process's rows."""

    sync_batchnorm: bool = True


KEY_NAME = "rng:key"  # the per-step key input; ':' keeps it apart from every data field and state name


class Context:
    """The building site of one layer: the graph, the layer's name (prefix of its parameters) and the mode."""

    def __init__(
        self,
        graph: Graph,
        name: str,
        training: bool,
        collected: Collected,
        overrides: tuple = (),
        build_nodes: Callable | None = None,
        parallel: DataParallel | None = None,
    ):
        self.graph, self.name, self._training, self.collected = graph, name, training, collected
        self.overrides = overrides  # ((node name, {param: init settings}), ...), innermost last
        self.build_nodes = build_nodes  # builds nested node definitions (residual blocks)
        self.parallel = parallel  # set when building one process's train graph of a data-parallel run

    @property
    def training(self) -> bool:
        self.collected.mode_dependent = True
        return self._training

    def apply(self, op: str, *args, **attrs) -> Node:
        return self.graph.apply(op, *args, **attrs)

    def sub(self, name: str) -> Context:
        """The context of a part of this layer (mlp's ``0``, attention's ``query``): parameters ``<node>.<name>.*``."""
        return Context(
            self.graph,
            f"{self.name}.{name}",
            self._training,
            self.collected,
            self.overrides,
            self.build_nodes,
            self.parallel,
        )

    def param(self, name: str, shape, init, fans: Fans | None = None) -> Node:
        """A trainable parameter ``<layer>.<name>``; ``init`` is the layer's default initializer."""
        full = f"{self.name}.{name}"
        settings = normalize(self._override(full) or init)
        problem = init_problem(settings, shape)
        if problem:
            raise LayerError(f"parameter '{full}': {problem}")
        self.collected.inits[full] = ParamInit(settings, tuple(fans or fans_of(shape)))
        return self.graph.param(full, tuple(shape))

    def _override(self, full: str):
        """The spec's initializer for a parameter: the innermost ``init`` naming it by its path relative to
        the node that declares the ``init`` mapping, or by its own last name (``weight``)."""
        for node, mapping in reversed(self.overrides):
            relative = full[len(node) + 1 :]
            for key in (relative, relative.rsplit(".", 1)[-1]):
                if key in mapping:
                    self.collected.used_overrides.add((node, key))
                    return mapping[key]
        return None

    def state(self, name: str, shape, init) -> Node:
        """Non-trainable state ``<layer>.<name>``, fed in with each step (``init``: its first value)."""
        full = f"{self.name}.{name}"
        self.collected.state_inits[full] = normalize(init)
        node = self.graph.input(full, tuple(shape))
        self.collected.state[full] = node
        return node

    def update(self, state: Node, value: Node) -> None:
        """The state's value after a training step."""
        self.collected.state_updates[state.name] = value

    def key(self) -> tuple[Node, int]:
        """The step's random key (an input [key, first row], new each step: see ``rng.batch_key``) and a salt
        of this layer's own, so that two layers drawing from the same key draw independently (the
        ``dropout`` op's ``key`` and ``salt``)."""
        collected = self.collected
        if collected.key is None:
            collected.key = self.graph.input(KEY_NAME, (2,), "uint64")
        collected.key_users += 1
        return collected.key, collected.key_users

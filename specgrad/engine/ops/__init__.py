"""Primitive ops. Importing this package fills the registry; one module per family."""

from specgrad.engine.ops import collective, elementwise, linalg, nn, reduce, shape  # noqa: F401,E402  (registration side effects)
from specgrad.engine.ops.registry import REGISTRY, Op, ShapeError, get_op, register  # noqa: F401

"""Primitive ops. Importing this package fills the registry; one module per family."""
from specgrad.engine.ops.registry import REGISTRY, Op, ShapeError, get_op, register  # noqa: F401
from specgrad.engine.ops import elementwise, reduce, linalg, shape, nn  # noqa: F401,E402  (registration side effects)

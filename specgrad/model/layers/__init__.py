"""Layers: macros that expand into primitive ops, with their parameters and initializers.
Importing this package fills ``LAYERS``; one module per family."""
from specgrad.model.layers.base import LAYERS, Context, LayerError  # noqa: F401
# registration side effects:
from specgrad.model.layers import attention, blocks, conv, dense, normalization, recurrent  # noqa: F401,E402

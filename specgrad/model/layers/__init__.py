"""Layers: macros that expand into primitive ops, with their parameters and initializers.
Importing this package fills ``LAYERS``; one module per family."""

# registration side effects:
from specgrad.model.layers import (  # noqa: F401,E402
    attention,
    blocks,
    conv,
    dense,
    normalization,
    recurrent,
)
from specgrad.model.layers.base import LAYERS, Context, LayerError  # noqa: F401

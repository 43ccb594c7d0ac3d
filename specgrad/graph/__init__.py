"""The engine's graph: IR, build, autodiff, plans; ``hvp`` gives Hessian-vector products of a compiled model."""
from specgrad.graph.hessian import HessianVectorProduct, SecondDerivativeMissing, hvp

__all__ = ["HessianVectorProduct", "SecondDerivativeMissing", "hvp"]

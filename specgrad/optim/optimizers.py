"""Optimizers update parameters in place from their gradients, with the update rules PyTorch documents
(torch.optim: SGD, Adam, AdamW, Adagrad, RMSprop). Their state is a flat dict of arrays so checkpoints can
store it in an npz, and a resumed optimizer continues bit for bit.

Parameter groups (``groups: [{match: "b*", lr: 0.01, weight_decay: 0}]``) give parameters whose names match
a glob pattern their own learning rate and weight decay; the first matching group wins. A group's lr is
scaled by the schedule like the base lr (the schedule's factor ``lr(step) / lr`` applies to every group).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from fnmatch import fnmatchcase

import numpy as np

from specgrad.base.components import FRACTION, NON_NEGATIVE, POSITIVE, Registry
from specgrad.base.sharing import Sharing

GROUP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["match"],
    "properties": {
        "match": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
            "description": "glob pattern(s) of parameter names, e.g. 'b*' or [w1, w2]",
        },
        "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE,
    },
}
OPTIMIZERS = Registry(
    "optimizer",
    common={
        "groups": {
            "type": "array",
            "items": GROUP,
            "description": "per-parameter lr / weight_decay by name pattern; the first match wins",
        },
    },
)
BETA = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
# elements of a flat buffer updated together: the dozen passes of an Adam step over a chunk of each of its
# four arrays (256 KiB each in float32) stay in a core's L2 cache instead of streaming the whole buffers
CHUNK = 65536


class Optimizer:
    """Holds each parameter's lr factor and weight decay (after groups); subclasses implement ``update``
    (one parameter) or ``step`` (all of them at once)."""

    # True for an optimizer that evaluates the loss again within a step (L-BFGS's line search): its ``step``
    # also takes the step's loss and a closure that re-evaluates at the current parameters
    needs_closure = False

    def __init__(self, params: dict[str, np.ndarray], lr: float, weight_decay: float = 0.0):
        self.params = params
        self.lr = lr
        self.lr_scale = {name: 1.0 for name in params}
        self.weight_decay = {name: weight_decay for name in params}
        self.t = np.zeros((), np.int64)  # steps taken, for bias corrections and first-step rules
        # where a caller may write the gradients it passes to ``step`` (they are then not copied)
        self.grad_flat, self.grads = flat_like(params)

    def place_gradients(self, flat: np.ndarray) -> None:
        """Keep the gradients in ``flat`` from now on (the parameters' one dtype, back to back in order, as
        ``flat_like`` lays them out), e.g. the head of a buffer a data-parallel run sums over its processes
        in place, so that no copy goes in or out of it."""
        dtypes = {p.dtype for p in self.params.values()}
        n = sum(p.size for p in self.params.values())
        if dtypes != {flat.dtype} or flat.shape != (n,):
            raise ValueError(
                f"gradients of {n} {'/'.join(map(str, dtypes))} values cannot live in a buffer of "
                f"{flat.size} {flat.dtype}"
            )
        self.grad_flat, self.grads, offset = [flat], {}, 0
        for name, p in self.params.items():
            self.grads[name] = flat[offset : offset + p.size].reshape(p.shape)
            offset += p.size

    def map(self, fn, items) -> None:
        """fn(item) for every item: on the optimizer's threads when ``parallel`` gave it some, else here."""
        sharing = self.__dict__.get("_sharing")
        if sharing is None or len(items) < 2:
            for item in items:
                fn(item)
        else:
            sharing.run(fn, items)

    @contextmanager
    def parallel(self, workers: int):
        """Inside the block, updates over several chunks of the flat buffers run on ``workers`` threads, this
        one included (specgrad/base/sharing.py). Elementwise, so the bits do not depend on it."""
        if workers <= 1:
            yield self
            return
        sharing = Sharing(workers - 1)
        self._sharing: Sharing | None = sharing
        try:
            yield self
        finally:
            sharing.close()
            self._sharing = None

    def apply_groups(self, groups) -> None:
        """Give parameters matched by a group that group's lr and weight decay (first match wins)."""
        claimed = set()
        for i, group in enumerate(groups):
            patterns = [group["match"]] if isinstance(group["match"], str) else group["match"]
            matched = [name for name in self.params if any(fnmatchcase(name, p) for p in patterns)]
            if not matched:
                raise ValueError(
                    f"groups[{i}] matches no parameter ({', '.join(patterns)}; the parameters "
                    f"are {', '.join(self.params)})"
                )
            for name in matched:
                if name in claimed:
                    continue
                claimed.add(name)
                if "lr" in group:
                    self.lr_scale[name] = group["lr"] / self.lr
                if "weight_decay" in group:
                    self.weight_decay[name] = group["weight_decay"]

    def step(
        self,
        grads: dict[str, np.ndarray],
        lr: float,
        loss: float | None = None,
        closure: Callable[[], float] | None = None,
    ) -> int | None:
        """One update with base learning rate ``lr`` (the schedule's value this step). ``grads`` may be
        overwritten (they are this step's scratch space). ``loss`` and ``closure`` are for an optimizer that
        ``needs_closure`` (L-BFGS), which returns the evaluations the step used; the others ignore them and
        return None."""
        self.t += 1
        for name, p in self.params.items():
            lr_p = lr if self.lr_scale[name] == 1.0 else lr * self.lr_scale[name]
            self.update(name, p, grads[name], lr_p, self.weight_decay[name])
        return None

    def update(self, name: str, p: np.ndarray, g: np.ndarray, lr: float, weight_decay: float) -> None:
        raise NotImplementedError

    # The setting a momentum-cycling schedule (onecycle) drives each step: "momentum" (SGD, RMSprop) or
    # "beta1" (Adam, AdamW), what torch's OneCycleLR writes into the param group; None: nothing to cycle.
    cycled: str | None = None

    def cycle_momentum(self) -> None:
        """Prepare for ``set_momentum`` before every step: the buffers a momentum needs exist from the
        start (torch's OneCycleLR sets the group's momentum before the first step, even from 0)."""
        self._cycled_setting()

    def set_momentum(self, value: float) -> None:
        setattr(self, self._cycled_setting(), value)

    def _cycled_setting(self) -> str:
        if self.cycled is None:
            raise ValueError(f"{type(self).__name__} has no momentum or beta1 for the schedule to cycle")
        return self.cycled

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every array the optimizer's future depends on, by a stable key (the step count included)."""
        return {
            "t": self.t,
            **{f"{slot}/{name}": a for slot, arrays in self.slots().items() for name, a in arrays.items()},
        }

    def slots(self) -> dict[str, dict[str, np.ndarray]]:
        return {}

    def state_limits(self) -> dict[str, tuple[int, ...]]:
        """The largest shape of each state array whose first dimension grows as the run goes (a history);
        every other one always has the shape ``state_arrays`` gives it."""
        return {}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for key, value in self.state_arrays().items():
            if arrays[key].shape != value.shape:
                raise ValueError(f"optimizer state '{key}' has shape {arrays[key].shape}, expected {value.shape}")
            value[...] = arrays[key]


def _zeros(params, value=0.0):
    return {k: np.full_like(p, value) for k, p in params.items()}


def flat_like(params: dict[str, np.ndarray], value=0.0) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Arrays shaped like the parameters, stored back to back in one flat buffer per dtype (usually one),
    so that an update can run as a few numpy calls over all of them at once (PyTorch's "foreach"). Returns
    the flat buffers and the per-parameter views into them."""
    sizes: dict[np.dtype, int] = {}
    for p in params.values():
        sizes[p.dtype] = sizes.get(p.dtype, 0) + p.size
    flats = {dtype: np.full(n, value, dtype) for dtype, n in sizes.items()}
    views, offset = {}, dict.fromkeys(sizes, 0)
    for name, p in params.items():
        start = offset[p.dtype]
        views[name] = flats[p.dtype][start : start + p.size].reshape(p.shape)
        offset[p.dtype] = start + p.size
    return list(flats.values()), views


def _l2(g, p, weight_decay):
    """g + weight_decay * p (PyTorch's coupled weight decay), without touching g when there is none."""
    return g + weight_decay * p if weight_decay else g


@OPTIMIZERS.register(
    "sgd",
    {
        "lr": POSITIVE,
        "momentum": FRACTION,
        "dampening": FRACTION,
        "nesterov": {"type": "boolean"},
        "weight_decay": NON_NEGATIVE,
    },
    required=["lr"],
)
class SGD(Optimizer):
    """gradient descent with optional momentum, Nesterov momentum and weight decay (torch.optim.SGD)"""

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening 0")
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.buf = _zeros(params) if momentum else {}

    def update(self, name, p, g, lr, weight_decay):
        g = _l2(g, p, weight_decay)
        if self.momentum:
            b = self.buf[name]
            if self.t == 1:
                b[...] = g  # b_1 = g_1
            else:
                b *= self.momentum  # b_t = mu b_{t-1} + (1 - dampening) g_t
                b += (1 - self.dampening) * g
            g = g + self.momentum * b if self.nesterov else b
        p -= lr * g

    cycled = "momentum"

    def cycle_momentum(self):
        self.buf = self.buf or _zeros(self.params)

    def slots(self):
        return {"momentum": self.buf}


@OPTIMIZERS.register(
    "adam",
    {"lr": POSITIVE, "beta1": BETA, "beta2": BETA, "eps": POSITIVE, "weight_decay": NON_NEGATIVE},
    required=["lr"],
)
class Adam(Optimizer):
    """Adam (Kingma & Ba): bias-corrected moving averages of the gradient and its square; weight decay is
    added to the gradient (L2), as in torch.optim.Adam"""

    decoupled = False

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        # moments and scratch in flat buffers (one per dtype, in the order of grad_flat): the update is a
        # dozen numpy calls over all parameters, whatever their number, and allocates nothing
        (self.m_flat, self.m), (self.v_flat, self.v) = flat_like(params), flat_like(params)
        self.scratch = flat_like(params)[0]

    def step(self, grads, lr):
        """PyTorch's update for every parameter at once, over the flat buffers:
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
        (the same numpy operations, in the same order, as one parameter at a time: the same bits). The flat
        buffers are updated chunk by chunk (``CHUNK`` elements: each chunk's dozen passes stay in the CPU's
        cache), on ``workers`` threads when the run allows more than one (see ``Optimizer.parallel``)."""
        self.t += 1
        t = int(self.t)
        for name, p in self.params.items():
            g = self.grads[name]
            if grads[name] is not g:
                np.copyto(g, grads[name])
            wd = self.weight_decay[name]
            if wd and self.decoupled:
                p *= 1 - self._lr(name, lr) * wd  # AdamW: decay the weights, not the gradient
            elif wd:
                g += wd * p  # L2: g + wd p
        uniform = all(scale == 1.0 for scale in self.lr_scale.values())
        chunks = self._chunks()
        self.map(lambda c: self._update(*c, t, lr if uniform else None), chunks)
        if not uniform:
            for name, u in self.grads.items():
                u *= self._lr(name, lr)
            for u, s in zip(self.grad_flat, self.scratch):
                u /= s  # lr m_hat / (sqrt(v_hat) + eps)
        for name, p in self.params.items():
            p -= self.grads[name]

    def _update(self, g, m, v, s, t, lr):
        """One chunk: moments, then lr m_hat / (sqrt(v_hat) + eps) into g (without lr when lr is None)."""
        b1, b2 = self.beta1, self.beta2
        m *= b1  # m_t = b1 m + (1 - b1) g
        m += np.multiply(g, 1 - b1, out=s)
        v *= b2  # v_t = b2 v + (1 - b2) g^2
        s = np.multiply(g, g, out=s)
        s *= 1 - b2
        v += s
        s = np.divide(v, 1 - b2**t, out=s)  # sqrt(v_hat) + eps
        np.sqrt(s, out=s)
        s += self.eps
        np.divide(m, 1 - b1**t, out=g)  # m_hat, over the gradient: it is used up
        if lr is not None:
            g *= lr
            g /= s

    def _chunks(self) -> list[tuple]:
        chunks = self.__dict__.get("_chunk_list")
        if chunks is None:
            chunks = self._chunk_list = [
                tuple(a[i : i + CHUNK] for a in arrays)
                for arrays in zip(self.grad_flat, self.m_flat, self.v_flat, self.scratch)
                for i in range(0, len(arrays[0]), CHUNK)
            ]
        return chunks

    def _lr(self, name, lr):
        return lr if self.lr_scale[name] == 1.0 else lr * self.lr_scale[name]

    cycled = "beta1"

    def cycle_momentum(self):
        pass

    def slots(self):
        return {"m": self.m, "v": self.v}


@OPTIMIZERS.register(
    "adamw",
    {"lr": POSITIVE, "beta1": BETA, "beta2": BETA, "eps": POSITIVE, "weight_decay": NON_NEGATIVE},
    required=["lr"],
)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr * weight_decay, then Adam
    (torch.optim.AdamW; weight_decay defaults to 0.01)"""

    decoupled = True

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, beta1, beta2, eps, weight_decay)


@OPTIMIZERS.register(
    "adagrad",
    {
        "lr": POSITIVE,
        "lr_decay": NON_NEGATIVE,
        "eps": POSITIVE,
        "initial_accumulator_value": NON_NEGATIVE,
        "weight_decay": NON_NEGATIVE,
    },
    required=["lr"],
)
class Adagrad(Optimizer):
    """Adagrad: each coordinate's step is divided by the root of its summed squared gradients
    (torch.optim.Adagrad)"""

    def __init__(self, params, lr, lr_decay=0.0, eps=1e-10, initial_accumulator_value=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.lr_decay, self.eps = lr_decay, eps
        self.sum = _zeros(params, initial_accumulator_value)

    def update(self, name, p, g, lr, weight_decay):
        g = _l2(g, p, weight_decay)
        clr = lr / (1 + (int(self.t) - 1) * self.lr_decay)
        s = self.sum[name]
        s += g * g  # state_sum += g^2
        p -= clr * g / (np.sqrt(s) + self.eps)

    def slots(self):
        return {"sum": self.sum}


@OPTIMIZERS.register(
    "rmsprop",
    {
        "lr": POSITIVE,
        "alpha": BETA,
        "eps": POSITIVE,
        "momentum": FRACTION,
        "centered": {"type": "boolean"},
        "weight_decay": NON_NEGATIVE,
    },
    required=["lr"],
)
class RMSprop(Optimizer):
    """RMSprop: divide by a moving root mean square of the gradient, optionally centered and with
    momentum (torch.optim.RMSprop)"""

    def __init__(self, params, lr, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.alpha, self.eps, self.momentum, self.centered = alpha, eps, momentum, centered
        self.square_avg = _zeros(params)
        self.grad_avg = _zeros(params) if centered else {}
        self.buf = _zeros(params) if momentum else {}

    def update(self, name, p, g, lr, weight_decay):
        g = _l2(g, p, weight_decay)
        v = self.square_avg[name]
        v *= self.alpha  # v_t = alpha v + (1 - alpha) g^2
        v += (1 - self.alpha) * (g * g)
        if self.centered:
            ga = self.grad_avg[name]
            ga *= self.alpha  # g_avg = alpha g_avg + (1 - alpha) g
            ga += (1 - self.alpha) * g
            denom = np.sqrt(v - ga * ga) + self.eps
        else:
            denom = np.sqrt(v) + self.eps
        if self.momentum:
            b = self.buf[name]
            b *= self.momentum  # b_t = mu b + g / denom
            b += g / denom
            p -= lr * b
        else:
            p -= lr * g / denom

    cycled = "momentum"

    def cycle_momentum(self):
        self.buf = self.buf or _zeros(self.params)

    def slots(self):
        return {"square_avg": self.square_avg, "grad_avg": self.grad_avg, "momentum": self.buf}


def make_optimizer(settings: dict, params: dict[str, np.ndarray]) -> Optimizer:
    optimizer = OPTIMIZERS.create(settings, params=params)
    optimizer.apply_groups(settings.get("groups", ()))
    return optimizer


from specgrad.optim import lbfgs as _lbfgs  # noqa: E402,F401  (registers "lbfgs"; it builds on Optimizer)

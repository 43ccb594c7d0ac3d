"""L-BFGS for full-batch training, with the behaviour torch.optim.LBFGS documents (Nocedal & Wright,
Numerical Optimization, algorithms 7.4 and 3.5/3.6; the line search is the bracketing and zooming of
"lswolfe" with cubic interpolation).

One optimizer step is one ``torch.optim.LBFGS.step(closure)``: up to ``max_iter`` iterations, each a
direction from the two-loop recursion over the last ``history_size`` curvature pairs (s, y), then either a
strong-Wolfe line search (``line_search_fn: strong_wolfe``) or a fixed step of ``lr``; at most ``max_eval``
evaluations of the loss and gradient (the closure), the first at the current parameters. The step ends
early when the gradient's largest component is at most ``tolerance_grad`` or the progress (loss change,
largest component of the step, directional derivative) falls under ``tolerance_change``. The curvature
history, the last direction and step length, the iteration and evaluation counts survive from step to
step and are saved in checkpoints, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from specgrad.base.components import NON_NEGATIVE, POSITIVE
from specgrad.optim.optimizers import OPTIMIZERS, Optimizer

COUNT = {"type": "integer", "minimum": 1}
# the line search's constants (torch's too): sufficient decrease c1, curvature c2, and the bracket width,
# times the direction's largest component, under which zooming stops
C1, C2, BRACKET_TOLERANCE = 1e-4, 0.9, 1e-9
MIN_CURVATURE = 1e-10  # a pair (s, y) with y.s at most this would break positive definiteness: skipped


@OPTIMIZERS.register(
    "lbfgs",
    {
        "lr": POSITIVE,
        "max_iter": COUNT,
        "max_eval": COUNT,
        "tolerance_grad": NON_NEGATIVE,
        "tolerance_change": NON_NEGATIVE,
        "history_size": COUNT,
        "line_search_fn": {"enum": ["strong_wolfe", "none"]},
    },
    full_batch=True,
)
class LBFGS(Optimizer):
    """limited-memory BFGS with a strong-Wolfe line search, for full-batch training (torch.optim.LBFGS;
    lr 1, max_iter 20, max_eval max_iter*5//4, tolerance_grad 1e-7, tolerance_change 1e-9, history_size 100)"""

    needs_closure = True

    def __init__(
        self,
        params,
        lr=1.0,
        max_iter=20,
        max_eval=None,
        tolerance_grad=1e-7,
        tolerance_change=1e-9,
        history_size=100,
        line_search_fn="strong_wolfe",
    ) -> None:
        super().__init__(params, lr)
        if len({p.dtype for p in params.values()}) > 1:
            raise ValueError("lbfgs needs parameters of one dtype")
        self.max_iter, self.history_size = max_iter, history_size
        self.max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        self.line_search = line_search_fn == "strong_wolfe"
        self.flat_grad = self.grad_flat[0] if self.grad_flat else np.zeros(0)  # the closure's gradient lands here
        n, dtype = self.flat_grad.size, self.flat_grad.dtype
        # the state one step hands the next (all of it checkpointed)
        self.n_iter = np.zeros((), np.int64)  # iterations over the whole run
        self.func_evals = np.zeros((), np.int64)  # closure evaluations over the whole run
        self.d = np.zeros(n, dtype)  # the last direction
        self.step_size = np.zeros((), np.float64)  # and its step length
        self.h_diag = np.ones((), np.float64)  # initial inverse Hessian scale y.s / y.y
        self.prev_grad = np.zeros(n, dtype)
        self.prev_loss = np.zeros((), np.float64)
        self.old_dirs: list[np.ndarray] = []  # y = g_k+1 - g_k, oldest first
        self.old_steps: list[np.ndarray] = []  # s = t d
        self.ro: list[float] = []  # 1 / y.s

    def apply_groups(self, groups) -> None:
        if groups:
            raise ValueError("lbfgs takes no parameter groups: one lr for all parameters (as torch.optim.LBFGS)")

    # ------------------------------------------------------------------ parameters as one flat vector
    def _params_flat(self) -> np.ndarray:
        return np.concatenate([p.reshape(-1) for p in self.params.values()]) if self.params else np.zeros(0)

    def _set_params(self, flat: np.ndarray) -> None:
        start = 0
        for p in self.params.values():
            p[...] = flat[start : start + p.size].reshape(p.shape)
            start += p.size

    def _add_to_params(self, t: float, d: np.ndarray) -> None:
        """p += t d, parameter by parameter (views of d)."""
        start = 0
        for p in self.params.values():
            p += t * d[start : start + p.size].reshape(p.shape)
            start += p.size

    # ------------------------------------------------------------------ one step
    def step(self, grads, lr, loss: float | None = None, closure: Callable[[], float] | None = None) -> int:
        """One ``LBFGS.step(closure)``: ``loss`` and ``grads`` are the closure's first evaluation (at the
        current parameters); ``closure()`` evaluates again at the parameters as they are then, returning
        the loss and leaving the gradient in the optimizer's gradient buffers. Returns the number of
        evaluations the step used, the first included."""
        if closure is None or loss is None:
            raise TypeError("lbfgs needs the loss and a closure that re-evaluates it")
        self.t += 1
        for name, g in grads.items():
            if g is not self.grads[name]:
                np.copyto(self.grads[name], g)
        flat_grad = self.flat_grad.copy()
        evals = 1
        self.func_evals += 1
        if not flat_grad.size or np.abs(flat_grad).max() <= self.tolerance_grad:
            return evals
        if lr == 0:  # a schedule's zero (warmup from 0): no move, and no line search along a step of 0
            return evals
        d, t = self.d, float(self.step_size)
        for n_iter in range(1, self.max_iter + 1):
            self.n_iter += 1
            if self.n_iter == 1:
                d = -flat_grad
                self.old_dirs, self.old_steps, self.ro = [], [], []
                self.h_diag[...] = 1.0
            else:
                self._remember(flat_grad - self.prev_grad, d * t)
                d = self._direction(flat_grad)
            self.prev_grad[...] = flat_grad
            self.prev_loss[...] = prev_loss = loss
            # the first step of the run is scaled to the gradient's size; later ones start at lr
            t = min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr if self.n_iter == 1 else lr
            gtd = float(flat_grad @ d)  # directional derivative
            if gtd > -self.tolerance_change:
                break
            if self.line_search:
                x0 = self._params_flat()

                def along(step: float, x0=x0, d=d) -> tuple[float, np.ndarray]:
                    """Loss and gradient at x0 + step d, then the parameters back at x0."""
                    self._add_to_params(step, d)
                    value = float(closure())
                    self._set_params(x0)
                    return value, self.flat_grad.copy()

                loss, flat_grad, t, used = strong_wolfe(
                    along, t, d, loss, flat_grad, gtd, max_evals=self.max_eval - evals
                )
                self._add_to_params(t, d)
            else:
                self._add_to_params(t, d)
                used = 0
                if n_iter != self.max_iter:  # the last iteration's point is the next step's start
                    loss, used = float(closure()), 1
                    flat_grad = self.flat_grad.copy()
            evals += used
            self.func_evals += used
            if (
                n_iter == self.max_iter
                or evals >= self.max_eval
                or np.abs(flat_grad).max() <= self.tolerance_grad
                or np.abs(d * t).max() <= self.tolerance_change
                or abs(loss - prev_loss) < self.tolerance_change
            ):
                break
        self.d, self.step_size[...] = d, t
        return evals

    def _remember(self, y: np.ndarray, s: np.ndarray) -> None:
        """Add the curvature pair (s, y) if y.s is positive enough, dropping the oldest beyond history_size."""
        ys = float(y @ s)
        if ys > MIN_CURVATURE:
            if len(self.old_dirs) == self.history_size:
                del self.old_dirs[0], self.old_steps[0], self.ro[0]
            self.old_dirs.append(y)
            self.old_steps.append(s)
            self.ro.append(1.0 / ys)
            self.h_diag[...] = ys / float(y @ y)

    def _direction(self, flat_grad: np.ndarray) -> np.ndarray:
        """-H g by the two-loop recursion, H the L-BFGS inverse Hessian built from the stored pairs."""
        q = -flat_grad
        alphas = [0.0] * len(self.old_dirs)
        for i in reversed(range(len(self.old_dirs))):
            alphas[i] = float(self.old_steps[i] @ q) * self.ro[i]
            q -= alphas[i] * self.old_dirs[i]
        r = q * float(self.h_diag)
        for i in range(len(self.old_dirs)):
            beta = float(self.old_dirs[i] @ r) * self.ro[i]
            r += (alphas[i] - beta) * self.old_steps[i]
        return r

    # ------------------------------------------------------------------ checkpoints
    def state_arrays(self) -> dict[str, np.ndarray]:
        n, dtype = self.d.size, self.d.dtype
        return {
            "t": self.t,
            "n_iter": self.n_iter,
            "func_evals": self.func_evals,
            "d": self.d,
            "step_size": self.step_size,
            "h_diag": self.h_diag,
            "prev_grad": self.prev_grad,
            "prev_loss": self.prev_loss,
            "old_dirs": np.array(self.old_dirs, dtype).reshape(len(self.old_dirs), n),
            "old_steps": np.array(self.old_steps, dtype).reshape(len(self.old_steps), n),
            "ro": np.array(self.ro, np.float64),
        }

    def state_limits(self) -> dict[str, tuple[int, ...]]:
        n = self.d.size
        return {"old_dirs": (self.history_size, n), "old_steps": (self.history_size, n), "ro": (self.history_size,)}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """The fixed-size state in place; the history (however many pairs, up to history_size) as lists."""
        n = self.d.size
        dirs, steps, ro = (np.asarray(arrays[k]) for k in ("old_dirs", "old_steps", "ro"))
        k = len(ro) if ro.ndim == 1 else -1
        if not 0 <= k <= self.history_size or dirs.shape != (k, n) or steps.shape != (k, n):
            raise ValueError(
                f"optimizer state 'old_dirs', 'old_steps', 'ro' have shapes {dirs.shape}, "
                f"{steps.shape}, {ro.shape}; expected [k, {n}], [k, {n}], [k] with k <= "
                f"{self.history_size}"
            )
        fixed = {key: value for key, value in self.state_arrays().items() if key not in ("old_dirs", "old_steps", "ro")}
        for key, value in fixed.items():
            if arrays[key].shape != value.shape:
                raise ValueError(f"optimizer state '{key}' has shape {arrays[key].shape}, expected {value.shape}")
        for key, value in fixed.items():
            value[...] = arrays[key]
        dtype = self.d.dtype
        self.old_dirs = [row.astype(dtype) for row in dirs]
        self.old_steps = [row.astype(dtype) for row in steps]
        self.ro = [float(v) for v in ro]


def cubic_minimum(
    x1: float, f1: float, g1: float, x2: float, f2: float, g2: float, bounds: tuple[float, float] | None = None
) -> float:
    """The minimizer of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clamped to ``bounds``
    (default: between x1 and x2); the bounds' midpoint when the cubic has no minimum (Nocedal & Wright 3.59)."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            at = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            at = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(at, lo), hi)
    return (lo + hi) / 2.0


def strong_wolfe(
    along: Callable[[float], tuple[float, np.ndarray]],
    t: float,
    d: np.ndarray,
    f: float,
    g: np.ndarray,
    gtd: float,
    max_evals: int,
) -> tuple[float, np.ndarray, float, int]:
    """A step length t along d satisfying the strong Wolfe conditions
        f(t) <= f(0) + c1 t f'(0)   and   |f'(t)| <= c2 |f'(0)|,
    from the first trial ``t``: first bracket an interval that contains one (extrapolating by cubic
    interpolation up to 10x), then zoom into it. ``along(t)`` is the loss and gradient at x + t d; ``f``,
    ``g`` and ``gtd`` those at t = 0. At most ``max_evals`` evaluations after the first trial. Returns
    (loss, gradient, t, evaluations) at the point chosen (the best found when no point qualifies)."""
    d_norm = float(np.abs(d).max())
    f_new, g_new = along(t)
    evals, done, it = 1, False, 0
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    # the bracket's two ends (a single point once both conditions hold): step, loss, gradient, slope; every
    # way out of the loop below sets them
    bracket: list[float]
    bracket_f: list[float]
    bracket_g: list[np.ndarray]
    bracket_gtd: list[float]
    while it < max_evals:
        if f_new > f + C1 * t * gtd or (it > 1 and f_new >= f_prev):
            # insufficient decrease, or no better than the last trial: the minimum lies between them
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -C2 * gtd:  # both conditions hold: done
            bracket, bracket_f, bracket_g, done = [t], [f_new], [g_new], True
            break
        if gtd_new >= 0:  # past a minimum: it lies between the two trials
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        # still descending steeply: extrapolate, between a little beyond t and ten times t
        t_next = cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = t_next
        f_new, g_new = along(t)
        evals += 1
        gtd_new = float(g_new @ d)
        it += 1
    if it == max_evals:  # out of evaluations: the better of 0 and t
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket, keeping at ``low`` its point of lowest loss
    insufficient_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and it < max_evals:
        if abs(bracket[1] - bracket[0]) * d_norm < BRACKET_TOLERANCE:
            break
        t = cubic_minimum(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # a trial within a tenth of the bracket from one end makes little progress; the second time (or at
        # an end) it moves to that tenth
        top, bottom = max(bracket), min(bracket)
        margin = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < margin:
            if insufficient_progress or t >= top or t <= bottom:
                t = top - margin if abs(t - top) < abs(t - bottom) else bottom + margin
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new = along(t)
        evals += 1
        gtd_new = float(g_new @ d)
        it += 1
        if f_new > f + C1 * t * gtd or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -C2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:  # the old low becomes the high end
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new, gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evals

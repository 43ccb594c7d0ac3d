"""What ``specgrad sweep`` shows while it runs: on a terminal, a rich panel (trials done, running, pruned,
failed, the best so far); piped, one plain line per trial that ends."""

from __future__ import annotations

import sys
from collections.abc import Callable

from specgrad.run.sweep.file import Sweep
from specgrad.run.sweep.study import ERROR, trial_states


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _line(counts: dict, best: dict | None, metric: str) -> str:
    text = (
        f"{counts['done'] + counts['pruned'] + counts['failed']}/{counts['target']} finished "
        f"({counts['done']} completed, {counts['pruned']} pruned, {counts['failed']} failed), "
        f"{counts['running']} running"
    )
    if best:
        text += f"; best {metric} {best['value']:.6g} (trial {best['number']})"
    return text


class SweepView:
    """Call ``update`` with each poll of the study; use as a context manager around the sweep."""

    def __init__(self, sweep: Sweep, echo: Callable[[str], None], quiet: bool = False, live: bool | None = None):
        self.sweep, self.echo, self.quiet = sweep, echo, quiet
        self.live = None
        self.seen: dict[int, object] = {}
        if not quiet and (sys.stdout.isatty() if live is None else live):
            from rich.live import Live

            self.live = Live(auto_refresh=False, transient=False)

    def __enter__(self):
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.stop()

    def update(self, trials, counts: dict, best: dict | None) -> None:
        if self.quiet:
            return
        if self.live:
            self.live.update(self._panel(trials, counts, best), refresh=True)
            return
        S = trial_states()
        for t in trials:
            if t.state in (S.COMPLETE, S.PRUNED, S.FAIL) and self.seen.get(t.number) != t.state:
                self.seen[t.number] = t.state
                self.echo(self._ended(t) + "  | " + _line(counts, best, self.sweep.metric))

    def _ended(self, t) -> str:
        S = trial_states()
        if t.state == S.COMPLETE:
            what = f"completed, {self.sweep.metric} {t.value:.6g}"
        elif t.state == S.PRUNED:
            step = max(t.intermediate_values, default=0)
            what = f"pruned at step {step}"
        elif ERROR in t.user_attrs:
            what = "failed: " + t.user_attrs[ERROR].splitlines()[0][:200]
        else:
            what = "interrupted, to be resumed"
        return f"trial {t.number} {what} ({_params(t.params)})"

    def _panel(self, trials, counts: dict, best: dict | None):
        from rich.table import Table

        S = trial_states()
        table = Table(title=f"sweep {self.sweep.name}: {_line(counts, best, self.sweep.metric)}", title_justify="left")
        for column in ("trial", "state", self.sweep.metric, "params"):
            table.add_column(column)
        shown = [t for t in trials if t.state == S.RUNNING] + [
            t for t in trials if t.state != S.RUNNING and t.state != S.WAITING
        ][-8:]
        for t in shown:
            value = (
                f"{t.value:.6g}"
                if t.value is not None
                else (
                    f"{t.intermediate_values[max(t.intermediate_values)]:.6g} @ {max(t.intermediate_values)}"
                    if t.intermediate_values
                    else ""
                )
            )
            star = " *" if best and t.number == best["number"] else ""
            table.add_row(str(t.number), t.state.name.lower() + star, value, _params(t.params))
        return table

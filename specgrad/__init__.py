"""specgrad: declarative training on a reverse-mode engine of its own.

The public API (``specgrad.load``, ``compile``, ``train``, ``open_run``, ``gradcheck``...) lives in
:mod:`specgrad.api` and is re-exported here on first use, so ``import specgrad`` stays light (the CLI's
``--help`` imports no numpy)."""

from specgrad.base.version import __version__

_API = (
    "Diagnostic",
    "ERRORS",
    "Model",
    "ParamCheck",
    "Run",
    "Spec",
    "SpecError",
    "UnsupportedOpset",
    "check",
    "compare_runs",
    "compile",
    "config_text",
    "connect",
    "diagnose",
    "diagnosis_text",
    "evaluate",
    "export",
    "find_runs",
    "find_specs",
    "flag_errors",
    "gradcheck",
    "graph",
    "launched_rank",
    "load",
    "load_sweep",
    "open_run",
    "plot",
    "plot_runs",
    "predict",
    "run_sweep",
    "runs_table",
    "schema",
    "split_specs",
    "train",
    "train_run_dir",
    "validate_file",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from specgrad import api

        return getattr(api, name)
    raise AttributeError(f"module 'specgrad' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])

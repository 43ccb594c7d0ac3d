"""The samplers and pruners a sweep file may name, each with the JSON Schema of its settings beside the
Optuna object it makes. The sweep schema is generated from these registries, so a setting Optuna would
reject with a TypeError is refused, located, by ``specgrad validate`` instead. Optuna is imported only
when an object is made (``specgrad[sweep]``)."""

from __future__ import annotations

from specgrad.base.components import POSITIVE, Registry

SAMPLERS = Registry("sampler")
PRUNERS = Registry("pruner")

SEED = {"type": "integer", "minimum": 0, "description": "seeds the sampler (default: the sweep's seed)"}
COUNT = {"type": "integer", "minimum": 0}
STARTUP = {**COUNT, "description": "trials sampled at random before the model of the objective is used"}
SAMPLERS.common = {"seed": SEED}


def optuna_module():
    """Optuna, or an error naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise SweepDependencyError("sweeps need Optuna: pip install 'specgrad[sweep]'") from None
    return optuna


class SweepDependencyError(Exception):
    """An optional package a sweep needs is missing; the message names the extra."""


def make_sampler(settings: dict, seed: int, space: dict | None = None):
    """The sampler of validated ``settings`` (their ``seed``, else ``seed``). Trial n's proposals come from
    the sampler seeded with (seed, n), made afresh for it: one worker proposes the same trials every time,
    while workers on this machine or others, and a rerun after a kill, never replay one random stream (and
    so one another's trials). A sampler registered with ``seed="shared"`` keeps one seed for every trial:
    grid (the seed orders the grid, which trials index) and QMC (its sequence, scrambled by the seed)."""
    settings = dict(settings)
    seed = settings.pop("seed", seed)
    if SAMPLERS[settings["type"]].meta.get("seed") == "shared":
        return SAMPLERS.create(settings, seed=seed, space=space)
    return _trial_seeded(lambda n: SAMPLERS.create(settings, seed=_trial_seed(seed, n), space=space))


def _trial_seed(seed: int, number: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _trial_seeded(make):
    """A sampler that hands each trial, by number, to a sampler ``make(number)`` made for it."""
    optuna = optuna_module()

    class TrialSeeded(optuna.samplers.BaseSampler):
        def __init__(self):
            self.number, self.sampler = None, None

        def _of(self, trial):
            if trial.number != self.number:
                self.number, self.sampler = trial.number, make(trial.number)
            return self.sampler

        def before_trial(self, study, trial):
            self._of(trial).before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._of(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._of(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values):
            self._of(trial).after_trial(study, trial, state, values)

        def reseed_rng(self):
            pass  # the seeds are the trials' own

    return TrialSeeded()


@SAMPLERS.register(
    "tpe",
    {
        "n_startup_trials": STARTUP,
        "multivariate": {"type": "boolean", "description": "model the parameters jointly"},
        "constant_liar": {
            "type": "boolean",
            "description": "avoid proposing what running trials already try (good with many workers)",
        },
    },
)
def _tpe(seed=None, space=None, **settings):
    """Tree-structured Parzen estimator: Optuna's default, good for most searches."""
    return optuna_module().samplers.TPESampler(seed=seed, **settings)


@SAMPLERS.register("random")
def _random(seed=None, space=None):
    """Independent uniform (or log-uniform) draws."""
    return optuna_module().samplers.RandomSampler(seed=seed)


@SAMPLERS.register("grid", seed="shared")  # the seed orders the grid: every worker must order it alike
def _grid(seed=None, space=None):
    """Every combination of the parameters' values once (every parameter must be a choice)."""
    return optuna_module().samplers.GridSampler(space, seed=seed)


@SAMPLERS.register("bruteforce")
def _bruteforce(seed=None, space=None):
    """Every combination of discrete values, in random order, the space grown as trials suggest values."""
    return optuna_module().samplers.BruteForceSampler(seed=seed)


@SAMPLERS.register(
    "qmc",
    {
        "qmc_type": {"enum": ["sobol", "halton"], "description": "the low-discrepancy sequence"},
        "scramble": {"type": "boolean"},
    },
    seed="shared",
)
def _qmc(seed=None, space=None, **settings):
    """Quasi-Monte Carlo: evenly spread points (Sobol or Halton)."""
    return optuna_module().samplers.QMCSampler(seed=seed, **settings)


@SAMPLERS.register("cmaes", {"n_startup_trials": STARTUP, "sigma0": POSITIVE})
def _cmaes(seed=None, space=None, **settings):
    """CMA evolution strategy, for continuous parameters (needs the cmaes package)."""
    return optuna_module().samplers.CmaEsSampler(seed=seed, **settings)


@SAMPLERS.register("gp", {"n_startup_trials": STARTUP})
def _gp(seed=None, space=None, **settings):
    """Gaussian-process Bayesian optimization (needs scipy and torch)."""
    return optuna_module().samplers.GPSampler(seed=seed, **settings)


@SAMPLERS.register("nsgaii", {"population_size": {"type": "integer", "minimum": 2}})
def _nsgaii(seed=None, space=None, **settings):
    """A genetic algorithm (NSGA-II)."""
    return optuna_module().samplers.NSGAIISampler(seed=seed, **settings)


WARMUP = {**COUNT, "description": "steps of each trial before it may be pruned"}
STARTUP_TRIALS = {**COUNT, "description": "trials that finish before any is pruned"}
INTERVAL = {"type": "integer", "minimum": 1, "description": "check every N reports"}


@PRUNERS.register("none")
def _none():
    """Never prune."""
    return optuna_module().pruners.NopPruner()


@PRUNERS.register("median", {"n_startup_trials": STARTUP_TRIALS, "n_warmup_steps": WARMUP, "interval_steps": INTERVAL})
def _median(**settings):
    """Stop a trial whose value is worse than the median of earlier trials at the same step."""
    return optuna_module().pruners.MedianPruner(**settings)


@PRUNERS.register(
    "percentile",
    {
        "percentile": {"type": "number", "minimum": 0, "maximum": 100},
        "n_startup_trials": STARTUP_TRIALS,
        "n_warmup_steps": WARMUP,
        "interval_steps": INTERVAL,
    },
    required=["percentile"],
)
def _percentile(**settings):
    """Stop a trial worse than the given percentile of earlier trials at the same step."""
    return optuna_module().pruners.PercentilePruner(**settings)


@PRUNERS.register(
    "successive_halving",
    {
        "min_resource": {"type": "integer", "minimum": 1},
        "reduction_factor": {"type": "integer", "minimum": 2},
        "min_early_stopping_rate": COUNT,
    },
)
def _halving(**settings):
    """Asynchronous successive halving: keep the best 1/reduction_factor at each rung."""
    return optuna_module().pruners.SuccessiveHalvingPruner(**settings)


@PRUNERS.register(
    "hyperband",
    {
        "min_resource": {"type": "integer", "minimum": 1},
        "max_resource": {"type": "integer", "minimum": 1},
        "reduction_factor": {"type": "integer", "minimum": 2},
    },
)
def _hyperband(**settings):
    """Hyperband: successive halving over several budgets."""
    return optuna_module().pruners.HyperbandPruner(**settings)


@PRUNERS.register("threshold", {"lower": {"type": "number"}, "upper": {"type": "number"}, "n_warmup_steps": WARMUP})
def _threshold(**settings):
    """Stop a trial whose value leaves [lower, upper]."""
    return optuna_module().pruners.ThresholdPruner(**settings)


@PRUNERS.register("patient", {"patience": COUNT, "min_delta": {"type": "number", "minimum": 0}}, required=["patience"])
def _patient(**settings):
    """Stop a trial that has not improved for `patience` reports."""
    return optuna_module().pruners.PatientPruner(None, **settings)

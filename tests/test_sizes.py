"""Sizes at validate (docs/spec.md, "Memory"): computed from shapes without allocating, and a run estimated
above its memory budget refused with a located error naming the largest tensors. The estimate is checked
against the peak memory a real training process reaches."""

import re
import tracemalloc

import pytest
from conftest import MODELS, run_cli
from measure import run_measured

from specgrad.spec import check_spec, load_spec
from specgrad.spec.sizes import (
    default_budget,
    estimate,
    machine_memory,
    optimizer_copies,
    parse_budget,
)

POLY = MODELS / "poly.yaml"
MOONS = MODELS / "mlp_moons.yaml"
# consistent shapes around a [100000, 100000] parameter (80 GB): phi [B, 100000] @ w @ k -> [B]
SQUARE = [
    "model.params={w: {shape: [100000, 100000]}, k: {shape: [100000]}}",
    "model.nodes=[{phi: 'powers(x, 99999)'}, {h: phi @ w}, {y_hat: h @ k}]",
]


def validate_cli(spec, *overrides):
    """`specgrad validate` in a subprocess limited to 4 GiB of address space, with its own peak RSS."""
    return run_measured("validate", spec, *[a for o in overrides for a in ("--set", o)], address_limit=4 << 30)


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, overrides, largest",
    [
        (MOONS, ["model.nodes.0.h1.units=1000000000"], "'h1' [700, 1000000000] float64: 5.1 TiB"),
        (POLY, SQUARE, "parameter 'w' [100000, 100000] float64: 74.5 GiB"),
        (POLY, ["data.n=1000000000000"], "data field 'x' [1000000000000] float64: 7.3 TiB"),
        (
            POLY,
            ["model.params.k.shape=[100000001]", "model.nodes.0.phi=powers(x, 100000000)"],
            "activation 'phi' [200, 100000001] float64: 149.0 GiB",
        ),
    ],
)
def test_a_run_too_large_for_the_machine_is_a_located_error_at_validate(spec, overrides, largest):
    proc = validate_cli(spec, *overrides)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "MemoryError" not in proc.stdout + proc.stderr
    assert "error: the run needs about" in proc.stdout and "75% of this machine's" in proc.stdout
    assert largest in proc.stdout, proc.stdout
    assert re.match(r"^(\S+\.yaml|--set .*):\d+:\d+: error: the run needs", proc.stdout), proc.stdout
    assert proc.peak_kib < 300 << 10, f"validate peaked at {proc.peak_kib} KiB"


def test_validate_allocates_nothing_the_size_of_the_model():
    """A 64 x 1,000,000 layer (512 MB of float64) within a 1 TiB budget: valid, and validate's numpy and
    Python allocations stay far below the layer's size."""
    tracemalloc.start()
    try:
        ok, diags = check_spec(MOONS, ["model.nodes.0.h1.units=1000000", "train.memory_budget=1 TiB"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ok, diags
    assert peak < 64 << 20, f"validate allocated {peak} bytes"


def test_the_budget_is_a_setting_with_units_and_refuses_what_exceeds_it():
    ok, _ = check_spec(POLY, ["train.memory_budget=1 GiB"])
    assert ok
    ok, diags = check_spec(POLY, ["train.memory_budget=1000"])
    assert not ok
    (d,) = [d for d in diags if d.severity == "error"]
    assert "more than its budget of 1000 B (train.memory_budget)" in d.message
    ok, diags = check_spec(POLY, ["train.memory_budget=10 kg"])
    assert not ok and diags[0].location.file.startswith("--set train.memory_budget")


@pytest.mark.parametrize(
    "text, nbytes",
    [(123, 123), ("8 GiB", 8 << 30), ("500 MB", 500_000_000), ("1.5KiB", 1536), (" 2 TB ", 2 * 10**12), ("7 B", 7)],
)
def test_budget_units(text, nbytes):
    assert parse_budget(text) == nbytes


def test_the_default_budget_is_three_quarters_of_the_machine():
    import os

    memory = machine_memory()
    assert memory is not None and memory <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    budget, why = default_budget()
    assert budget == int(memory * 0.75) and "75% of this machine's" in why


@pytest.mark.parametrize(
    "optimizer, copies",
    [
        ({"type": "sgd", "lr": 0.1}, 1),
        ({"type": "sgd", "lr": 0.1, "momentum": 0.9}, 2),
        ({"type": "adam", "lr": 0.1}, 4),
        ({"type": "rmsprop", "lr": 0.1, "centered": True}, 3),
    ],
)
def test_optimizer_state_is_counted_per_parameter_byte(optimizer, copies):
    """Against the arrays the optimizer really allocates for the real parameters (gradient buffer + slots)."""
    from specgrad.base.rng import INIT, stream
    from specgrad.model.build import init_params
    from specgrad.optim.optimizers import make_optimizer

    spec = load_spec(MOONS)
    params = init_params(spec.model, stream(0, INIT))
    real = make_optimizer(optimizer, params)
    held = sum(a.nbytes for a in real.grad_flat) + sum(
        a.nbytes for arrays in real.slots().values() for a in arrays.values()
    )
    held += sum(a.nbytes for a in getattr(real, "scratch", []))
    assert held == copies * sum(p.nbytes for p in params.values())
    assert optimizer_copies(optimizer, spec.model.params) == copies


@pytest.mark.slow
@pytest.mark.parametrize("batches", [[], ["data.split={val: 0.2, test: 0.2}"], ["train.batch_size=64"]])
def test_the_estimate_is_close_to_what_training_really_takes(tmp_path, batches):
    """A run dominated by [rows, 4001] activations: the estimate against the peak RSS of `specgrad train`
    minus that of a tiny run (Python and numpy at rest). A full batch, a full batch of a split (the
    training split's rows), minibatches (the evaluation's activations dominate)."""
    big = [
        "model.params.k.shape=[4001]",
        "model.nodes.0.phi=powers(x, 4000)",
        "data.n=5000",
        "train.steps=2",
        "optimizer={type: adam, lr: 1.0e-9}",
        *batches,
    ]
    spec = load_spec(POLY, big)
    total, _, _ = estimate(spec.data, spec.model, spec.doc.loc)

    def peak_rss(overrides, run_dir):
        result = run_measured(
            "train", POLY, *[a for o in overrides for a in ("--set", o)], "--run-dir", run_dir, "--quiet", timeout=300
        )
        assert result.returncode == 0, result.stderr
        return result.peak_kib << 10

    measured = peak_rss(big, tmp_path / "big") - peak_rss(["train.steps=2"], tmp_path / "small")
    # the training plan keeps its full-batch phi while the final evaluation computes its own: both are counted
    print(f"estimate {total}, measured {measured}: {measured / total:.2f}x")
    assert 0.75 * total < measured < 1.33 * total, (total, measured)


@pytest.mark.slow
def test_validate_cli_reports_it_like_any_other_error():
    result = run_cli("validate", POLY, "--set", "data.n=1000000000000", "--format", "github")
    assert result.returncode == 1 and result.stdout.startswith("::error file=")
    assert "data field 'x' [1000000000000] float64" in result.stdout


def test_an_estimate_beyond_a_float_is_reported_not_raised():
    """Sizes are exact Python ints, so a hostile shape can exceed what a float holds: still a message."""
    from specgrad.spec.sizes import human

    assert human(10**400) == "more than 10^12 PiB"
    assert human(5 * 1024**3) == "5.0 GiB"

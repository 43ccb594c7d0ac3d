"""Checkpoints from untrusted hands (docs/reliability.md, "Checkpoints and run directories from untrusted hands").

Each tampering recomputes the manifest's sha256 (whoever tampers can), so it is the loader's own checks that
must refuse it: before reading a member, its zip entry and npy header are checked against what the spec's
model expects; only regular files inside the run directory are opened. A refusal is a CheckpointError
naming the file, and resume falls back to the previous checkpoint as it does for any other damage."""

import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, run_cli
from measure import run_measured

from specgrad.base.fileio import write_npz
from specgrad.run.checkpoint import (
    ORDER_KEY,
    CheckpointError,
    Expected,
    list_checkpoints,
    load_checkpoint,
    optim_key,
    param_key,
)
from specgrad.run.trainer import Hooks, RunError, Trainer
from specgrad.spec import load_spec

POLY = MODELS / "poly.yaml"
# 200 rows in batches of 50: 4 batches an epoch, so the checkpoint at step 3 is mid-epoch (its batch order
# is used by the resume) and step 2's is there to fall back to
OVERRIDES = ["train.steps=3", "train.batch_size=50", "train.checkpoint={every: 1}", "optimizer={type: adam, lr: 0.01}"]
K = param_key("k")  # poly's one parameter, as its checkpoints hold it


@pytest.fixture
def run(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(load_spec(POLY, OVERRIDES), run_dir).run()
    return run_dir


def latest(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "step-00000003"


def rehash(folder: Path, fname: str) -> None:
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][fname] = hashlib.sha256((folder / fname).read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


def tamper(folder: Path, change) -> None:
    """Rewrite arrays.npz with ``change(arrays)`` applied, and fix up the manifest."""
    arrays = dict(load_checkpoint(folder).arrays)
    change(arrays)
    write_npz(folder / "arrays.npz", arrays)
    rehash(folder, "arrays.npz")


class Restored(Exception):
    """Raised by ``on_start``, which hears the step a resume restored: the run stops there, before training on."""


def resume(run_dir: Path) -> tuple[int, list[str]]:
    """Resume in-process; the step it restored and the warnings it gave."""
    warned: list[str] = []

    def on_start(start, total):
        raise Restored(start)

    trainer = Trainer(load_spec(POLY, OVERRIDES), run_dir, Hooks(on_start=on_start, on_warning=warned.append))
    with pytest.raises(Restored) as restored:
        trainer.run(resume=True)
    return restored.value.args[0], warned


def assert_refused_and_fell_back(run_dir: Path, problem: str) -> None:
    step, warned = resume(run_dir)
    assert step == 2, warned
    assert any(
        "step-00000003" in w and "arrays.npz" in w and problem in w and "falling back to" in w for w in warned
    ), warned


# ------------------------------------------------------------------------------------ arrays: shape, dtype


def test_float32_parameters_where_float64_is_expected_are_refused_not_cast(run):
    tamper(latest(run), lambda a: a.update({K: a[K].astype(np.float32)}))
    assert_refused_and_fell_back(run, f"'{K}.npy' is float32[6]; this model expects float64[6]")


@pytest.mark.parametrize("dtype", ["<U6", "S8", [("a", "<f8"), ("b", "<i8")], ">f8", "complex128"])
def test_str_structured_byteswapped_and_complex_arrays_are_refused(run, dtype):
    tamper(latest(run), lambda a: a.update({K: np.zeros(6, dtype=dtype)}))
    assert_refused_and_fell_back(run, f"'{K}.npy'")


@pytest.mark.parametrize("key", [K, optim_key("m/k"), optim_key("t"), ORDER_KEY])
def test_a_wrong_shape_in_any_array_is_refused(run, key):
    tamper(latest(run), lambda a: a.update({key: np.zeros((7,), a[key].dtype)}))
    assert_refused_and_fell_back(run, f"'{key}.npy' is")


def test_missing_and_unexpected_members_are_refused(run):
    tamper(latest(run), lambda a: a.pop(optim_key("v/k")))
    assert_refused_and_fell_back(run, f"has no {optim_key('v/k')}")
    tamper(run / "checkpoints" / "step-00000002", lambda a: a.update({"smuggled": np.zeros(3)}))
    step, warned = resume(run)
    assert step == 1 and any("step-00000002" in w and "unexpected member 'smuggled.npy'" in w for w in warned)
    tamper(run / "checkpoints" / "step-00000001", lambda a: a.update({K: a[K][:5]}))
    with pytest.raises(RunError, match="no loadable checkpoint"):  # never a restart from step 0
        resume(run)


@pytest.mark.slow
def test_a_str_array_is_a_clear_error_in_eval_too(run):
    for folder in list_checkpoints(run / "checkpoints"):
        tamper(folder, lambda a: a.update({K: np.array(["a"] * 6)}))
    result = run_cli("eval", run)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"'{K}.npy' has dtype '<U1'" in result.stderr


# ------------------------------------------------------------------------------------ the batch order


@pytest.mark.parametrize(
    "order",
    [
        lambda n: np.arange(n) + n,  # out of range
        lambda n: np.zeros(n, np.int64),  # in range, repeated
        lambda n: -1 - np.arange(n),
    ],
)  # negative: would wrap
def test_a_batch_order_that_is_not_a_permutation_is_refused_at_restore(run, order):
    tamper(latest(run), lambda a: a.update({"order": order(len(a["order"])).astype(a["order"].dtype)}))
    assert_refused_and_fell_back(run, "not a permutation of the data's 200 rows")


def test_a_permuted_order_still_resumes_bitwise(run, tmp_path):
    """The check refuses only damage: an untouched mid-epoch checkpoint resumes to the same end."""
    clean = tmp_path / "clean"
    Trainer(load_spec(POLY, OVERRIDES[:1] + ["train.steps=6"] + OVERRIDES[1:]), clean).run()
    Trainer(load_spec(POLY, ["train.steps=6"] + OVERRIDES[1:]), run, allow_spec_change=True).run(resume=True)
    ours, theirs = (load_checkpoint(d / "checkpoints" / "step-00000006").arrays for d in (run, clean))
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].tobytes() == theirs[key].tobytes(), key


# ------------------------------------------------------------------------------------ deflate bomb


def deflate_bomb(path: Path, gib: int = 1) -> None:
    """arrays.npz whose parameter k is a deflated member of ``gib`` GiB of float64 zeros with a header
    that agrees (shape [gib * 2**27]) and a true CRC: about 1 MB per GiB on disk."""
    path.write_bytes(_deflate_bomb_bytes(gib))


@functools.cache
def _deflate_bomb_bytes(gib: int) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (gib << 27,)})
    chunk = bytes(64 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    # after a full flush the compressor starts afresh, so every 64 MiB block of zeros deflates to the same
    # bytes: compressed once, repeated
    head = compressor.compress(header.getvalue()) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeats = (gib << 30) // len(chunk)
    body = head + block * repeats + compressor.flush()
    crc = zlib.crc32(header.getvalue())
    for _ in range(repeats):
        crc = zlib.crc32(chunk, crc)
    size = len(header.getvalue()) + repeats * len(chunk)
    name = f"{K}.npy".encode()

    def u(n, width):
        return n.to_bytes(width, "little")

    # a zip64 entry written by hand, sizes and CRC true: a consistent archive, as a careful attacker makes it
    zip64 = u(1, 2) + u(16, 2) + u(size, 8) + u(len(body), 8)
    local = (
        b"PK\x03\x04"
        + u(45, 2)
        + u(0, 2)
        + u(8, 2)
        + u(0, 4)
        + u(crc, 4)
        + u(0xFFFFFFFF, 4) * 2
        + u(len(name), 2)
        + u(len(zip64), 2)
        + name
        + zip64
    )
    central = (
        b"PK\x01\x02"
        + u(45, 2)
        + u(45, 2)
        + u(0, 2)
        + u(8, 2)
        + u(0, 4)
        + u(crc, 4)
        + u(0xFFFFFFFF, 4) * 2
        + u(len(name), 2)
        + u(len(zip64), 2)
        + u(0, 2) * 3
        + u(0, 4)
        + u(0, 4)
        + name
        + zip64
    )
    end = b"PK\x05\x06" + u(0, 4) + u(1, 2) * 2 + u(len(central), 4) + u(len(local) + len(body), 4) + u(0, 2)
    return local + body + central + end


@pytest.mark.slow
def test_the_deflate_bomb_is_a_consistent_archive(tmp_path):
    """The bomb is real: zipfile agrees on its size and inflates it whole, CRC checked, to 1 GiB."""
    deflate_bomb(tmp_path / "bomb.npz")
    assert (tmp_path / "bomb.npz").stat().st_size < 2 << 20
    with zipfile.ZipFile(tmp_path / "bomb.npz") as zf:
        (info,) = zf.infolist()
        assert info.file_size > 1 << 30 and info.compress_type == zipfile.ZIP_DEFLATED
        with zf.open(info) as member:
            assert np.lib.format.read_magic(member) == (1, 0)
            assert np.lib.format.read_array_header_1_0(member)[0] == (1 << 27,)
            inflated = 0
            while block := member.read(64 << 20):  # to the end: zipfile checks the CRC there
                inflated += len(block)
            assert inflated == 8 << 27


@pytest.mark.slow
def test_a_deflate_bomb_is_refused_before_decompression_in_bounded_memory(run):
    for folder in list_checkpoints(run / "checkpoints"):
        deflate_bomb(folder / "arrays.npz")
        rehash(folder, "arrays.npz")
    started = time.monotonic()
    for command in (
        ["eval", run],
        ["train", POLY, *[a for o in OVERRIDES for a in ("--set", o)], "--run-dir", run, "--resume", "--quiet"],
    ):
        result = run_measured(*command)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        # eval reads only the parameters, so it finds the compressed member; resume, which expects every
        # array, refuses the file from its size before hashing it
        assert (
            f"arrays.npz: '{K}.npy' is compressed (refused" in result.stderr or "bytes, more than the" in result.stderr
        ), result.stderr
        assert result.peak_kib < 300 << 10, f"{command[0]} peaked at {result.peak_kib} KiB"
    assert time.monotonic() - started < 30


def test_a_stored_member_whose_header_disagrees_with_the_model_is_not_read(tmp_path):
    """Even uncompressed: a member holding 10**12 elements by its header is refused from the header."""
    folder = tmp_path / "step-00000001"
    folder.mkdir()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(folder / "arrays.npz", "w") as zf:
        zf.writestr("w.npy", header.getvalue() + bytes(64))
    (folder / "state.json").write_text("{}")
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "format": 1,
                "step": 1,
                "files": {
                    f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in ("arrays.npz", "state.json")
                },
            }
        )
    )
    with pytest.raises(
        CheckpointError,
        match=r"'w.npy' is float64\[1000000000000\]; this model expects "
        r"float64\[3\]",
    ):
        load_checkpoint(folder, {"w": Expected((3,), np.dtype("float64"))})


# ------------------------------------------------------------------------------------ special files


def special(kind: str, path: Path, tmp_path: Path) -> None:
    path.unlink()
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:  # a link to an ordinary file elsewhere: still not followed
        outside = tmp_path / "elsewhere.json"
        outside.write_text("{}")
        path.symlink_to(outside)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "outside-link"])
@pytest.mark.parametrize("name", ["manifest.json", "state.json", "arrays.npz"])
def test_special_files_in_a_checkpoint_are_refused_and_fall_back(run, tmp_path, kind, name):
    special(kind, latest(run) / name, tmp_path)
    step, warned = resume(run)
    assert step == 2
    assert any(
        f"step-00000003: {name}: " in w and ("symbolic link" in w or "not a regular file" in w) for w in warned
    ), warned


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_special_latest_pointer_neither_hangs_nor_eats_memory(run, tmp_path, kind):
    special(kind, run / "checkpoints" / "latest", tmp_path)
    step, warned = resume(run)
    assert step == 3  # the newest complete folder, found without the pointer
    assert any("latest" in w for w in warned), warned
    result = run_cli("eval", run, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_symlinked_checkpoint_folder_is_not_followed(run, tmp_path):
    outside = tmp_path / "elsewhere"
    latest(run).rename(outside)
    latest(run).symlink_to(outside, target_is_directory=True)
    step, warned = resume(run)
    assert step == 2 and any("latest: names step-00000003, a symbolic link" in w for w in warned), warned


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_special_data_json_is_a_clear_error_in_eval(run, tmp_path, kind):
    special(kind, run / "data.json", tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "specgrad.cli", "eval", str(run)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "data.json" in proc.stderr and ("symbolic link" in proc.stderr or "not a regular file" in proc.stderr)


# ------------------------------------------------------------------------------------ the run's own files


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_special_metrics_log_is_a_clear_error_at_resume(run, tmp_path, kind):
    special(kind, run / "metrics.jsonl", tmp_path)
    result = run_cli(
        "train",
        POLY,
        *[a for o in OVERRIDES for a in ("--set", o)],
        "--run-dir",
        run,
        "--resume",
        "--quiet",
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"cannot read {run / 'metrics.jsonl'}: " in result.stderr, result.stderr


def test_the_run_files_are_never_written_through_a_planted_link(tmp_path):
    from specgrad.base.fileio import write_atomic

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / f".summary.json.{os.getpid()}.tmp").symlink_to(victim)
    write_atomic(tmp_path / "run" / "summary.json", "{}\n")
    assert victim.read_text() == "precious\n" and (tmp_path / "run" / "summary.json").read_text() == "{}\n"


@pytest.mark.parametrize("value", [-5, 10**400])
def test_an_rng_state_out_of_range_is_a_clear_error_at_resume(run, value):
    state_file = latest(run) / "state.json"
    state = json.loads(state_file.read_text())
    state["rng"]["state"]["state"] = value
    state_file.write_text(json.dumps(state))
    rehash(latest(run), "state.json")
    args = [a for o in OVERRIDES for a in ("--set", o)]
    result = run_cli("train", POLY, *args, "--run-dir", run, "--resume", "--quiet", timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "does not fit this model" in result.stderr, result.stderr

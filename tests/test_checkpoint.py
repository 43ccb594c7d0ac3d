"""Behavioural tests for specgrad.run.checkpoint: bit-exact round trips, damage detection,
fallback to older checkpoints, crash debris, failing disks and pruning."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specgrad.run.checkpoint import (
    Checkpoint,
    CheckpointError,
    Expected,
    TrainingArrays,
    checkpoints_dir,
    expected_arrays,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    optim_key,
    param_key,
    prune_checkpoints,
    save_checkpoint,
)

# --------------------------------------------------------------------------- helpers


def sample_arrays() -> dict[str, np.ndarray]:
    """Arrays whose exact bits matter: NaN payloads, -0.0, subnormals, odd layouts."""
    odd_bits = np.array([0x7FC00001, 0x80000000, 0x00000001, 0x7F800000], dtype=np.uint32).view(np.float32)
    return {
        param_key("w"): np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        param_key("odd_bits"): odd_bits,
        optim_key("m/w"): np.linspace(-1, 1, 5, dtype=np.float64) * np.pi,
        "data/order": np.array([5, 2, 9, -(2**62)], dtype=np.int64),
        "scalar": np.array(3.25, dtype=np.float64),
        "scalar_int": np.array(7, dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        "big_endian": np.arange(3, dtype=">f8"),
        "half": np.array([0.1, 65504], dtype=np.float16),
        "mask": np.array([True, False]),
        "file": np.ones(2),  # collides with np.savez's own parameter name
        "a": np.array([1.0]),
        "a.npy": np.array([2.0]),  # ambiguous under NpzFile lookup
    }


def sample_state(step: int = 500) -> dict:
    rng = np.random.default_rng(1234)
    rng.random(3)
    return {
        "step": step,
        "epoch": 2,
        "rng": rng.bit_generator.state,
        "spec_hash": "deadbeef",
        "history": [{"loss": 0.5}, {"loss": 0.25}],
        "unicode": "λ→✓",
    }


def assert_bit_identical(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for key, expected in want.items():
        actual = got[key]
        assert actual.dtype == expected.dtype, key
        assert actual.shape == expected.shape, key
        assert actual.tobytes() == expected.tobytes(), key


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def rehash(folder: Path, fname: str) -> None:
    """Make the manifest agree with a deliberately replaced file, so the parser itself is tested."""
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][fname] = hashlib.sha256((folder / fname).read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


def save_three(root: Path) -> list[Path]:
    return [save_checkpoint(root, step, {"w": np.full(3, float(step))}, {"step": step}) for step in (100, 200, 300)]


class Warnings(list):
    def __call__(self, message: str) -> None:
        self.append(message)


# --------------------------------------------------------------------------- round trip and layout


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    arrays, state = sample_arrays(), sample_state()
    path = save_checkpoint(tmp_path / "ckpt", 500, arrays, state)
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Checkpoint)
    assert loaded.path == path and loaded.step == 500
    assert_bit_identical(loaded.arrays, arrays)
    assert loaded.arrays["fortran"].flags.f_contiguous
    assert loaded.state == state


def test_rng_state_round_trip_resumes_the_same_stream(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rng.normal(size=10)
    path = save_checkpoint(tmp_path, 1, {}, {"rng": rng.bit_generator.state})
    expected = rng.normal(size=5)
    restored = np.random.default_rng()
    restored.bit_generator.state = load_checkpoint(path).state["rng"]
    np.testing.assert_array_equal(restored.normal(size=5), expected)


def test_layout_manifest_and_latest(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 500, {param_key("k"): np.ones(2)}, {"step": 500})
    assert path == tmp_path / "step-00000500"
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "manifest.json", "state.json"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["step"] == 500
    assert set(manifest["files"]) == {"arrays.npz", "state.json"}
    for fname, digest in manifest["files"].items():
        assert hashlib.sha256((path / fname).read_bytes()).hexdigest() == digest
    assert (tmp_path / "latest").read_text().strip() == "step-00000500"
    # The archive is an ordinary, uncompressed npz that numpy reads without pickle.
    with zipfile.ZipFile(path / "arrays.npz") as zf:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz[param_key("k")], np.ones(2))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_array_keys_are_the_format(tmp_path: Path) -> None:
    """The keys of a training checkpoint are its on-disk format: checkpoints written before must keep
    loading, so this test spells them out literally (the one place outside specgrad/run/checkpoint.py)."""
    saved = TrainingArrays(
        params={"w": np.ones((2, 3)), "b": np.zeros(())},
        optim={"t": np.array(4), "m/w": np.full((2, 3), 0.5)},
        state={"bn.running_mean": np.arange(3.0)},
        order=np.array([2, 0, 1]),
    )
    arrays = saved.pack()
    assert list(arrays) == ["params/w", "params/b", "optim/t", "optim/m/w", "order", "state/bn.running_mean"]
    path = save_checkpoint(checkpoints_dir(tmp_path), 7, arrays, {})
    assert path == tmp_path / "checkpoints" / "step-00000007"
    with zipfile.ZipFile(path / "arrays.npz") as zf:
        assert zf.namelist() == [f"{key}.npy" for key in arrays]

    # what a model expects is checked against exactly these keys, and unpacking gives back the plain names
    expected = expected_arrays(saved.params, saved.state, saved.optim, Expected((3,), np.dtype(np.int64)))
    assert expected.keys() == arrays.keys()
    back = TrainingArrays.unpack(load_checkpoint(path, expected).arrays)
    for kind in ("params", "optim", "state"):
        mine, theirs = getattr(saved, kind), getattr(back, kind)
        assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine), kind
    np.testing.assert_array_equal(back.order, saved.order)
    # evaluation asks only for the parameters and the model state
    assert list(expected_arrays(saved.params, saved.state)) == ["params/w", "params/b", "state/bn.running_mean"]


def test_nan_in_state_round_trips(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 3, {}, {"loss": float("nan"), "best": float("inf")})
    state = load_checkpoint(path).state
    assert np.isnan(state["loss"]) and state["best"] == float("inf")


def test_list_is_ascending_and_latest_is_newest(tmp_path: Path) -> None:
    for step in (300, 10**8, 100, 200):
        save_checkpoint(tmp_path, step, {"w": np.array(step)}, {"step": step})
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-00000100",
        "step-00000200",
        "step-00000300",
        "step-100000000",
    ]
    assert latest_checkpoint(tmp_path).step == 200  # 'latest' names the last one saved


def test_resave_same_step_replaces_it(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 500, {"w": np.zeros(2)}, {"v": 1})
    save_checkpoint(tmp_path, 500, {"w": np.ones(2)}, {"v": 2})
    loaded = load_checkpoint(tmp_path / "step-00000500")
    np.testing.assert_array_equal(loaded.arrays["w"], np.ones(2))
    assert loaded.state == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000500"]


@pytest.mark.parametrize(
    "arrays, state",
    [
        ({"bad": np.array([object()], dtype=object)}, {}),
        ({"list": [1.0, 2.0]}, {}),
        ({"": np.ones(1)}, {}),
        ({}, {"fn": print}),
        ({}, ["not", "a", "dict"]),
    ],
)
def test_save_rejects_bad_input_and_leaves_nothing(tmp_path: Path, arrays, state) -> None:
    with pytest.raises(CheckpointError, match="step-00000001"):
        save_checkpoint(tmp_path / "root", 1, arrays, state)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("step", [-1, True, 1.5, "3"])
def test_save_rejects_bad_step(tmp_path: Path, step) -> None:
    with pytest.raises(CheckpointError, match="step"):
        save_checkpoint(tmp_path, step, {}, {})


# --------------------------------------------------------------------------- damage and fallback


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def delete(path: Path) -> None:
    path.unlink()


DAMAGES = {"flipped": flip_byte, "truncated": truncate, "deleted": delete}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("fname", ["arrays.npz", "state.json", "manifest.json"])
def test_damaged_latest_is_named_and_falls_back(tmp_path: Path, damage: str, fname: str) -> None:
    first, second, third = save_three(tmp_path)
    DAMAGES[damage](third / fname)

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(third)
    message = str(info.value)
    assert str(third) in message and fname in message

    warned = Warnings()
    loaded = latest_checkpoint(tmp_path, warn=warned)
    assert loaded is not None and loaded.step == 200 and loaded.path == second
    np.testing.assert_array_equal(loaded.arrays["w"], np.full(3, 200.0))
    assert len(warned) == 1
    assert str(third) in warned[0] and fname in warned[0] and "falling back to" in warned[0]
    assert str(second) in warned[0]


def test_sha_mismatch_message(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 500, {"w": np.ones(100)}, {})
    flip_byte(path / "arrays.npz")
    with pytest.raises(CheckpointError, match=r"step-00000500: arrays\.npz: sha256 mismatch \(file damaged\)"):
        load_checkpoint(path)


def test_a_state_json_changed_but_still_valid_is_refused_by_its_hash(tmp_path: Path) -> None:
    """A best metric rewritten (0.5 -> 0.7) is valid JSON: only the manifest's sha256 can tell."""
    path = save_checkpoint(tmp_path, 7, {"w": np.ones(3)}, {"best": 0.5})
    state = path / "state.json"
    state.write_text(state.read_text().replace("0.5", "0.7"))
    with pytest.raises(CheckpointError, match=r"state\.json: sha256 mismatch"):
        load_checkpoint(path)


def test_fallback_walks_past_several_damaged(tmp_path: Path) -> None:
    first, second, third = save_three(tmp_path)
    flip_byte(third / "arrays.npz")
    (second / "state.json").unlink()
    warned = Warnings()
    assert latest_checkpoint(tmp_path, warn=warned).path == first
    assert len(warned) == 2 and str(third) in warned[0] and str(second) in warned[1]


def test_all_damaged_raises_listing_them(tmp_path: Path) -> None:
    paths = save_three(tmp_path)
    for path in paths:
        flip_byte(path / "arrays.npz")
    with pytest.raises(CheckpointError) as info:
        latest_checkpoint(tmp_path, warn=Warnings())
    for path in paths:
        assert str(path) in str(info.value)


def test_default_warn_uses_warnings(tmp_path: Path) -> None:
    _, _, third = save_three(tmp_path)
    flip_byte(third / "arrays.npz")
    with pytest.warns(RuntimeWarning, match="falling back"):
        assert latest_checkpoint(tmp_path).step == 200


def test_no_checkpoints_returns_none(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    assert list_checkpoints(tmp_path / "missing") == []


def test_latest_missing_or_dangling_uses_highest_step(tmp_path: Path) -> None:
    save_three(tmp_path)
    (tmp_path / "latest").unlink()
    assert latest_checkpoint(tmp_path, warn=Warnings()).step == 300

    (tmp_path / "latest").write_text("step-00000900\n")
    warned = Warnings()
    assert latest_checkpoint(tmp_path, warn=warned).step == 300
    assert warned and "step-00000900" in warned[0]


def test_latest_pointing_at_folder_without_manifest_warns(tmp_path: Path) -> None:
    _, _, third = save_three(tmp_path)
    (third / "manifest.json").unlink()
    assert third not in list_checkpoints(tmp_path)
    warned = Warnings()
    assert latest_checkpoint(tmp_path, warn=warned).step == 200
    assert "manifest.json" in warned[0] and str(third) in warned[0]


def test_latest_named_folder_is_tried_first(tmp_path: Path) -> None:
    save_three(tmp_path)
    (tmp_path / "latest").write_text("step-00000200\n")
    assert latest_checkpoint(tmp_path, warn=Warnings()).step == 200


def test_load_of_missing_folder_is_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="step-00000001"):
        load_checkpoint(tmp_path / "step-00000001")


@pytest.mark.parametrize(
    "manifest",
    [
        b"[1, 2]",
        b'{"format": 2, "step": 500, "files": {}}',
        b'{"format": 1, "step": 499, "files": {}}',
        b'{"format": 1, "step": 500, "files": {"../../etc/passwd": "' + b"0" * 64 + b'"}}',
        b'{"format": 1, "step": 500, "files": {}}',
        b"\xff\xfe not utf8",
        b"[" * 100000,
    ],
)
def test_bad_manifest_is_checkpoint_error(tmp_path: Path, manifest: bytes) -> None:
    path = save_checkpoint(tmp_path, 500, {}, {})
    (path / "manifest.json").write_bytes(manifest)
    with pytest.raises(CheckpointError, match="manifest.json"):
        load_checkpoint(path)


@pytest.mark.parametrize("text", [b"[1]", b"{not json", b'"str"', b"\x80\x81"])
def test_state_must_be_a_json_object(tmp_path: Path, text: bytes) -> None:
    path = save_checkpoint(tmp_path, 5, {}, {})
    (path / "state.json").write_bytes(text)
    rehash(path, "state.json")
    with pytest.raises(CheckpointError, match="state.json"):
        load_checkpoint(path)


def test_object_array_npz_is_rejected(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 5, {"w": np.ones(2)}, {})
    np.savez(path / "arrays.npz", w=np.array([{"evil": 1}, None], dtype=object))  # pickles the objects
    rehash(path, "arrays.npz")
    with pytest.raises(CheckpointError, match=r"arrays\.npz.*object array"):
        load_checkpoint(path)


def test_plain_npy_or_compressed_member_handling(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 5, {"w": np.ones(2)}, {})
    with open(path / "arrays.npz", "wb") as f:
        np.save(f, np.ones(3))  # a bare .npy, not an archive
    rehash(path, "arrays.npz")
    with pytest.raises(CheckpointError, match="arrays.npz"):
        load_checkpoint(path)
    # a valid npz, but specgrad never compresses, and a deflated member is how a deflate bomb gets in: it is
    # refused from its zip entry, before any decompression (tests/test_checkpoint_hostile.py has the bomb)
    np.savez_compressed(path / "arrays.npz", w=np.arange(4.0))
    rehash(path, "arrays.npz")
    with pytest.raises(CheckpointError, match="'w.npy' is compressed"):
        load_checkpoint(path)


def test_npy_header_lying_about_size_is_rejected(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 5, {}, {})
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(path / "arrays.npz", "w") as zf:
        zf.writestr("huge.npy", header.getvalue() + b"\0" * 16)
    rehash(path, "arrays.npz")
    with pytest.raises(CheckpointError, match="arrays.npz"):
        load_checkpoint(path)


def _write_and_load_arrays(root: Path, data: bytes) -> None:
    path = root / "step-00000005"
    if not path.exists():
        save_checkpoint(root, 5, {"w": np.ones(2)}, {"step": 5})
    (path / "arrays.npz").write_bytes(data)
    rehash(path, "arrays.npz")
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        assert "arrays.npz" in str(exc)


_VALID_NPZ = io.BytesIO()
np.savez(_VALID_NPZ, w=np.arange(6.0), i=np.arange(3))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048) | st.binary(max_size=512).map(lambda b: b"PK\x03\x04" + b))
def test_random_bytes_as_arrays_only_raise_checkpoint_error(tmp_path: Path, data: bytes) -> None:
    _write_and_load_arrays(tmp_path, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_VALID_NPZ.getvalue()) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.integers(0, len(_VALID_NPZ.getvalue())),
)
def test_mutated_npz_only_raises_checkpoint_error(tmp_path: Path, edits, cut: int) -> None:
    data = bytearray(_VALID_NPZ.getvalue())
    for index, value in edits:
        data[index] = value
    _write_and_load_arrays(tmp_path, bytes(data[: max(cut, 1)]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=256), fname=st.sampled_from(["state.json", "manifest.json"]))
def test_random_bytes_in_json_files_only_raise_checkpoint_error(tmp_path: Path, data: bytes, fname: str) -> None:
    path = tmp_path / "step-00000005"
    if not path.exists():
        save_checkpoint(tmp_path, 5, {"w": np.ones(2)}, {"step": 5})
    good = snapshot(path)
    (path / fname).write_bytes(data)
    if fname == "state.json":
        rehash(path, fname)
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        assert fname in str(exc)
    for name, content in good.items():  # restore for the next example
        (path / name).write_bytes(content)


# --------------------------------------------------------------------------- crash debris


def test_stale_tmp_folder_is_ignored_then_swept(tmp_path: Path) -> None:
    first = save_checkpoint(tmp_path, 100, {"w": np.ones(2)}, {})
    dead_pid = 999_999_999
    stale = tmp_path / f".tmp-step-00000700-{dead_pid}"
    stale.mkdir()
    (stale / "arrays.npz").write_bytes(b"half written")
    (stale / "manifest.json").write_text("{}")  # even a manifest must not make it count
    stale_old = tmp_path / f".old-step-00000050-{dead_pid}"
    stale_old.mkdir()

    assert list_checkpoints(tmp_path) == [first]
    warned = Warnings()
    assert latest_checkpoint(tmp_path, warn=warned).path == first and not warned

    save_checkpoint(tmp_path, 200, {"w": np.zeros(2)}, {})
    assert not stale.exists() and not stale_old.exists()


def test_incomplete_step_folder_without_manifest_is_ignored(tmp_path: Path) -> None:
    first = save_checkpoint(tmp_path, 100, {}, {})
    (tmp_path / "step-00000200").mkdir()
    (tmp_path / "step-1").mkdir()  # not a canonical name
    assert list_checkpoints(tmp_path) == [first]
    assert latest_checkpoint(tmp_path, warn=Warnings()).path == first


# --------------------------------------------------------------------------- failing disks


def _running_as_privileged(directory: Path) -> bool:
    probe = directory / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


def test_read_only_root_gives_checkpoint_error(tmp_path: Path, monkeypatch) -> None:
    first = save_checkpoint(tmp_path, 100, {"w": np.ones(3)}, {"step": 100})
    before = snapshot(tmp_path)
    os.chmod(tmp_path, 0o555)
    try:
        if _running_as_privileged(tmp_path):
            # root ignores permission bits; a read-only mount stops even root, at the first new folder
            def read_only(path, *args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

            monkeypatch.setattr(os, "mkdir", read_only)
        with pytest.raises(CheckpointError, match=str(tmp_path)):
            save_checkpoint(tmp_path, 200, {"w": np.zeros(3)}, {"step": 200})
    finally:
        os.chmod(tmp_path, 0o755)
    assert snapshot(tmp_path) == before
    assert load_checkpoint(first).step == 100


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("target", ["replace", "fsync", "write_array"])
def test_disk_full_keeps_previous_checkpoint(tmp_path: Path, monkeypatch, target: str) -> None:
    first = save_checkpoint(tmp_path, 100, {"w": np.ones(3)}, {"step": 100})
    before = snapshot(tmp_path)
    if target == "write_array":
        monkeypatch.setattr(np.lib.format, "write_array", _enospc)
    else:
        monkeypatch.setattr(os, target, _enospc)
    with pytest.raises(CheckpointError, match="step-00000200.*No space left"):
        save_checkpoint(tmp_path, 200, {"w": np.zeros(3)}, {"step": 200})
    monkeypatch.undo()
    assert snapshot(tmp_path) == before  # no debris, nothing touched
    assert latest_checkpoint(tmp_path, warn=Warnings()).path == first
    np.testing.assert_array_equal(load_checkpoint(first).arrays["w"], np.ones(3))


def test_failed_resave_of_same_step_restores_the_old_one(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint(tmp_path, 100, {"w": np.ones(3)}, {"v": 1})
    before = snapshot(tmp_path)
    real_replace = os.replace

    def fail_moving_new_in(src, dst):
        if Path(src).name.startswith(".tmp-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_moving_new_in)
    with pytest.raises(CheckpointError, match="step-00000100"):
        save_checkpoint(tmp_path, 100, {"w": np.zeros(3)}, {"v": 2})
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert load_checkpoint(path).state == {"v": 1}


def test_root_that_is_a_file_gives_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "root").write_text("not a dir")
    with pytest.raises(CheckpointError, match="root"):
        save_checkpoint(tmp_path / "root", 1, {}, {})


# --------------------------------------------------------------------------- pruning


def test_prune_keeps_what_it_is_told(tmp_path: Path) -> None:
    paths = [save_checkpoint(tmp_path, s, {"w": np.array(s)}, {}) for s in (100, 200, 300, 400)]
    prune_checkpoints(tmp_path, keep=[paths[1]])
    # step 400 survives because 'latest' names it.
    assert list_checkpoints(tmp_path) == [paths[1], paths[3]]
    assert load_checkpoint(paths[1]).step == 200
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_prune_never_deletes_latest_even_if_not_newest(tmp_path: Path) -> None:
    paths = save_three(tmp_path)
    (tmp_path / "latest").write_text("step-00000100\n")
    prune_checkpoints(tmp_path, keep=[])
    assert list_checkpoints(tmp_path) == [paths[0]]
    assert latest_checkpoint(tmp_path, warn=Warnings()).step == 100


def test_prune_accepts_equivalent_paths(tmp_path: Path, monkeypatch) -> None:
    paths = save_three(tmp_path)
    monkeypatch.chdir(tmp_path)
    prune_checkpoints(Path("."), keep=[Path("step-00000100"), str(paths[1])])
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000100", "step-00000200", "step-00000300"]
    prune_checkpoints(tmp_path, keep=[])
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000300"]

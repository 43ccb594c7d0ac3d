"""The hostile-input corpus (tests/data/hostile): every case runs the CLI in its own process, under a memory
limit and a wall-clock limit, in a fresh folder that is the root; next to it (outside the root) lie planted
secrets holding a unique token. Each case must end with its expected exit code and message, without a
traceback, and without the token (or a token written past a short excerpt inside the root) in its output.

Processes: by default each case is a fork of this test process with specgrad already imported (the same
``specgrad.cli.main`` as ``python -m specgrad.cli``, 10-50x cheaper to start); cases marked ``exec`` always
run as ``python -m specgrad.cli``, and SPECGRAD_HOSTILE_EXEC=1 runs every case that way.
"""

from __future__ import annotations

import base64
import io
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiered

HERE = Path(__file__).parent / "data" / "hostile"
MANIFEST = yaml.safe_load((HERE / "manifest.yaml").read_text(encoding="utf-8"))
REPO = Path(__file__).resolve().parent.parent
TIMEOUT = float(os.environ.get("SPECGRAD_HOSTILE_TIMEOUT", "20"))  # wall seconds; generous for a loaded CI box
BOMB_SECONDS = 2.0 * float(os.environ.get("SPECGRAD_HOSTILE_SLOWDOWN", "3"))  # the 2 s budget, loaded-box slack
MEMORY = 1 << 30  # address space each case may add
BOMB_GROWTH = 300 << 20  # what a bomb may add to resident memory
EXEC_ALL = os.environ.get("SPECGRAD_HOSTILE_EXEC") == "1"
TOKEN = "SECRET" + uuid.uuid4().hex
INROOT = "INROOT" + uuid.uuid4().hex
MIB = 1 << 20


def _corpus_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_corpus", HERE / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CORPUS = _corpus_module()
BASE = CORPUS.BASE  # a valid spec: the cases break it in one way each


def test_manifest_is_what_make_corpus_writes():
    assert [{k: v for k, v in c.items() if k != "files"} for c in CORPUS.cases] == MANIFEST


def test_corpus_is_large_enough_and_documented():
    assert len(MANIFEST) >= 150
    assert len({c["name"] for c in MANIFEST}) == len(MANIFEST)
    for c in MANIFEST:
        assert (HERE / "cases" / c["name"]).is_dir(), c["name"]


# --- planting secrets and making what a repository cannot hold ---------------------------------------------------


def plant_outside(outside: Path) -> None:
    outside.mkdir()
    (outside / "secret.env").write_text(f"AWS_SECRET_ACCESS_KEY={TOKEN}\nDB_PASSWORD={TOKEN}\n")
    (outside / "secret.yaml").write_text(f"password: {TOKEN}\nloss: {TOKEN}\nnested: {{k: {TOKEN}}}\n")
    (outside / "id_rsa").write_text(
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{TOKEN}\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    (outside / "secret.csv").write_text(f"{TOKEN},b\n1,2\n")
    np.savez(outside / "secret.npz", **{TOKEN: np.zeros(2)})
    (outside / "base.yaml").write_text(BASE)


def fill(text: str, outside: Path) -> str:
    return text.replace("@OUTSIDE@", str(outside)).replace("@INROOT@", INROOT)


def write(root: Path, name: str, text: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text, encoding="utf-8")


def _refs(root, header, items):
    write(root, "spec.yaml", BASE + "vars:\n" + "".join(f"  {line}\n" for line in header + items))


def make_bomb(root: Path, name: str) -> None:
    big = int(9.5 * MIB)
    if name == "string_doubling_40":
        _refs(root, ["a0: xxxxxxxxxxxxxxxx"], [f"a{i}: '${{vars.a{i - 1}}}${{vars.a{i - 1}}}'" for i in range(1, 41)])
    elif name == "string_doubling_1_line":
        _refs(root, ["a0: xxxxxxxxxxxxxxxx"], [f"a{i}: '" + f"${{vars.a{i - 1}}}" * 4 + "'" for i in range(1, 25)])
    elif name == "list_doubling":
        _refs(
            root,
            ["a0: [1, 2, 3, 4, 5, 6, 7, 8]"],
            [f"a{i}: ['${{vars.a{i - 1}}}', '${{vars.a{i - 1}}}']" for i in range(1, 41)],
        )
    elif name == "mapping_doubling":
        _refs(
            root,
            ["a0: {p: 1, q: 2}"],
            [f"a{i}: {{l: '${{vars.a{i - 1}}}', r: '${{vars.a{i - 1}}}'}}" for i in range(1, 41)],
        )
    elif name == "nested_reference_lists":
        _refs(
            root,
            ["a0: [[1, 2], [3, 4]]"],
            [f"a{i}: [['${{vars.a{i - 1}}}'], ['${{vars.a{i - 1}}}', 1]]" for i in range(1, 60)],
        )
    elif name in ("extends_doubling_30", "include_doubling_30"):
        key = "extends" if name.startswith("extends") else "include"
        if key == "extends":
            write(root, "spec.yaml", "extends: [e0.yaml, e0.yaml]\n")
            for i in range(30):
                write(
                    root,
                    f"e{i}.yaml",
                    (f"extends: [e{i + 1}.yaml, e{i + 1}.yaml]\n" if i < 29 else BASE)
                    + f"v{i}: {{a: 1, b: [1, 2, 3]}}\n",
                )
        else:
            write(root, "spec.yaml", BASE + "vars: {include: [f0.yaml, f0.yaml]}\n")
            for i in range(30):
                write(
                    root,
                    f"f{i}.yaml",
                    (f"include: [f{i + 1}.yaml, f{i + 1}.yaml]\n" if i < 29 else "")
                    + f"v{i}: {{a: 1, b: [1, 2, 3]}}\n",
                )
    elif name == "alias_billion_laughs":
        lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
        _refs(root, lines, [])
    elif name == "merge_key_bomb":
        lines = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4}"]
        lines += [
            f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}, *m{i - 1}], x{i}: {{<<: *m{i - 1}}}}}" for i in range(1, 25)
        ]
        _refs(root, lines, [])
    elif name == "flow_list_9mb":
        write(root, "spec.yaml", BASE + "vars: [" + "1," * (big // 2) + "1]\n")
    elif name == "many_keys":
        write(root, "spec.yaml", BASE + "vars:\n" + "".join(f"  k{i}: {i}\n" for i in range(400_000))[:big])
    elif name == "long_string_9mb":
        write(root, "spec.yaml", "specgrad: 1\nname: x\nvars: {a: '" + "x" * big + "'}\n")
    elif name == "comment_9mb":
        write(root, "spec.yaml", "specgrad: 1\nname: x\n" + ("#" + "x" * 78 + "\n") * (big // 80))
    elif name == "over_10mib":
        write(root, "spec.yaml", BASE + "#" + "x" * (10 * MIB) + "\n")
    elif name == "deep_flow_lists":
        write(root, "spec.yaml", BASE + "vars: " + "[" * 100_000 + "]" * 100_000 + "\n")
    elif name == "deep_mappings":
        write(root, "spec.yaml", BASE + "vars: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n")
    elif name == "long_line_9mb":
        write(root, "spec.yaml", BASE + "vars: {" + ", ".join(f"k{i}: {i}" for i in range(big // 12)) + "}\n")
    elif name == "formula_9mb":
        write(root, "spec.yaml", BASE.replace("phi @ k", "phi @ k" + " + x" * (big // 4)))
    elif name == "references_in_long_string":
        _refs(root, ["a: " + "y" * 1000], ["b: '" + "${vars.a}" * 20_000 + "'"])
    elif name == "many_references_small":
        _refs(root, ["a: 1"], [f"r{i}: '${{vars.a}}'" for i in range(30_000)])
    else:
        raise AssertionError(name)


def make_deep(root: Path, name: str) -> list[str]:
    """Writes the case; returns extra arguments for the command line."""
    if name.startswith("reference_chain_"):
        n = int(name.rsplit("_", 1)[1])
        _refs(root, [f"a{i}: '${{vars.a{i + 1}}}'" for i in range(n)], [f"a{n}: 1"])
    elif name in ("include_chain_60", "extends_chain_60"):
        key = name.split("_")[0]
        write(
            root,
            "spec.yaml",
            BASE.replace("loss: sse", "loss: {include: c0.yaml}") if key == "include" else "extends: c0.yaml\n",
        )
        for i in range(60):
            write(root, f"c{i}.yaml", f"{key}: c{i + 1}.yaml\n" if key == "extends" else f"include: c{i + 1}.yaml\n")
        write(root, "c60.yaml", BASE if key == "extends" else "type: sse\n")
    elif name == "include_nesting_grows":
        write(root, "spec.yaml", BASE + "vars: {include: n0.yaml}\n")
        for i in range(20):
            write(root, f"n{i}.yaml", "a: " + "{a: " * 60 + f"{{include: n{i + 1}.yaml}}" + "}" * 60 + "\n")
        write(root, "n20.yaml", "z: 1\n")
    elif name.startswith("formula_"):
        text = {
            "formula_480_terms": "+".join(["x"] * 480) + " + phi @ k",
            "formula_5000_minus": "-" * 5000 + "(phi @ k)",
            "formula_300_parentheses": "(" * 300 + "phi @ k" + ")" * 300,
            "formula_300_calls": "sin(" * 300 + "phi @ k" + ")" * 300,
            "formula_power_tower": "**".join(["x"] * 500) + " + phi @ k",
        }[name]
        write(root, "spec.yaml", BASE.replace("phi @ k", text))
    elif name.startswith("set_path_"):
        n = int(name.split("_")[2])
        write(root, "spec.yaml", BASE)
        return ["--set", ".".join(["a"] * n) + "=1"]
    elif name == "reference_path_490_parts":
        write(root, "spec.yaml", BASE.replace("name: hostile", "name: '${" + ".".join(["vars"] * 490) + "}'"))
    else:
        raise AssertionError(name)
    return []


def make_special(root: Path, name: str, outside: Path) -> None:
    if "fifo" in name:
        os.mkfifo(root / "pipe.yaml")
    if "socket" in name:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(root / "sock.yaml"))  # left bound: the folder is removed with the test
    if name == "dev_zero_symlink_include":
        os.symlink("/dev/zero", root / "zero.yaml")


SETUPS = {
    "bomb": lambda root, outside, v: make_bomb(root, v),
    "deep": lambda root, outside, v: make_deep(root, v),
    "special": lambda root, outside, v: make_special(root, v, outside),
    "outside_base": lambda root, outside, v: None,
}


def setup_case(case: dict, root: Path, outside: Path) -> list[str]:
    extra = []
    for kind, value in (case.get("setup") or {}).items():
        if kind == "symlink":
            for link, target in value.items():
                os.symlink(fill(target, outside), root / link)
        elif kind == "bytes":
            for name, data in value.items():
                (root / name).write_bytes(base64.b64decode(data))
        else:
            extra += SETUPS[kind](root, outside, value) or []
    return extra


# --- running one case ---------------------------------------------------------------------------------------------


def _statm() -> tuple[int, int]:
    """(virtual size, resident size) of this process, in bytes."""
    with open("/proc/self/statm") as f:
        size, resident = f.read().split()[:2]
    page = os.sysconf("SC_PAGE_SIZE")
    return int(size) * page, int(resident) * page


def run_exec(args, cwd: Path):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY + (1 << 30), resource.RLIM_INFINITY))

    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1", "COLUMNS": "200"}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "specgrad.cli", *args],
            cwd=cwd,
            capture_output=True,
            preexec_fn=limit,
            timeout=TIMEOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung: no exit within {TIMEOUT} s")
    seconds = time.perf_counter() - start
    output = (done.stdout + done.stderr).decode("utf-8", "backslashreplace")
    return done.returncode, output, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, None


def run_forked(args, cwd: Path):
    """``specgrad.cli.main`` with ``args`` in a forked child: (exit code, output, seconds, peak RSS, RSS at fork)."""
    import specgrad.cli
    import specgrad.model.build
    import specgrad.spec.validate  # noqa: F401
    from specgrad.spec.validate import validator

    validator()
    with tempfile.TemporaryFile() as out:
        vm, rss_at_fork = _statm()
        limit = vm + MEMORY
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                os.chdir(cwd)
                fd = os.open(os.devnull, os.O_RDONLY)
                os.dup2(fd, 0)
                os.dup2(out.fileno(), 1)
                os.dup2(out.fileno(), 2)
                sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", line_buffering=True)
                sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", line_buffering=True)
                resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
                sys.argv = ["specgrad", *args]
                from specgrad.cli import main

                try:
                    main()
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001  (shown, then asserted absent)
                traceback.print_exc()
                code = 71
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        deadline = start + TIMEOUT
        while True:
            waited, status, usage = os.wait4(pid, os.WNOHANG)
            if waited:
                break
            if time.perf_counter() > deadline:
                os.kill(pid, 9)
                os.wait4(pid, 0)
                pytest.fail(f"hung: no exit within {TIMEOUT} s")
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        out.seek(0)
        output = out.read().decode("utf-8", "backslashreplace")
    code = os.waitstatus_to_exitcode(status)
    return code, output, seconds, usage.ru_maxrss * 1024, rss_at_fork


@pytest.mark.parametrize(
    "case", tiered(MANIFEST, group=lambda c: c["name"].split("_")[0], ids=[c["name"] for c in MANIFEST])
)  # the fast tier runs the first case of each kind (bomb, leak, special, ...)
def test_hostile_case(case, tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    shutil.copytree(HERE / "cases" / case["name"], root, symlinks=True)
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.write_text(fill(path.read_text(encoding="utf-8"), outside), encoding="utf-8")
    plant_outside(outside)
    args = [fill(a, outside) for a in case["args"]] + setup_case(case, root, outside)

    run = run_exec if EXEC_ALL or case.get("exec") else run_forked
    code, output, seconds, peak, base = run(args, root)

    assert "Traceback" not in output, output[-3000:]
    assert TOKEN not in output, "a planted secret from outside the root was printed"
    for forbidden in case.get("forbid", []):
        assert fill(forbidden, outside) not in output, f"{forbidden} was printed"
    assert code == case["rc"], output[-3000:]
    assert fill(case["expect"], outside) in output, output[-3000:]
    if case.get("bomb"):
        assert seconds < BOMB_SECONDS, f"took {seconds:.2f} s"
        if base is not None:
            assert peak - base < BOMB_GROWTH, f"grew by {(peak - base) / MIB:.0f} MiB"


@pytest.mark.parametrize(
    "argv",
    tiered(
        [
            ["validate", "pipe.yaml"],
            ["validate", "--skip-non-specs", "pipe.yaml"],
            ["diagnose", "run"],
            ["runs", "run"],
            ["compare", "run", "run"],
        ]
    ),
)
def test_fifos_in_readers_of_untrusted_files_never_block(tmp_path, argv):
    """Every reader of a file that may come from anyone (a spec, a sweep file, a run directory's JSON and
    YAML) refuses a FIFO without opening it for a blocking read."""
    os.mkfifo(tmp_path / "pipe.yaml")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("spec.yaml", "summary.json", "metrics.jsonl", "trial.json"):
        os.mkfifo(run / name)
    done = subprocess.run(
        [sys.executable, "-m", "specgrad.cli", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert "Traceback" not in done.stderr, done.stderr

"""The pre-commit hook, as documented without `files:`, is handed every changed YAML file of a repository:
those that are not specs are skipped with a note, so committing a workflow or the repository's own
.pre-commit-config.yaml is not blocked, while specs are still checked."""

import re
import shlex

import yaml
from conftest import MODELS, ROOT, run_cli

HOOK = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]

NOT_SPECS = {
    ".pre-commit-config.yaml": "repos:\n  - repo: https://github.com/OWNER/specgrad\n    rev: v0.1.0\n"
    "    hooks:\n      - id: specgrad-validate\n",
    "ci.yml": "on: [push]\njobs:\n  test: {runs-on: ubuntu-latest}\n",  # `on` is YAML's true
    "template.yaml": "Resources:\n  Bucket: !Ref Name\n",  # a tag specgrad refuses
    "list.yaml": "- a\n- b\n",
}


def run_hook(*files, cwd):
    """What pre-commit runs: the hook's entry, then the changed files that pass its `exclude`."""
    command = shlex.split(HOOK["entry"])
    assert command[0] == "specgrad"
    passed = [f for f in files if not re.search(HOOK["exclude"], f)]
    return run_cli(*command[1:], *passed, cwd=cwd)


def test_yaml_files_that_are_not_specs_are_skipped_with_a_note(tmp_path):
    for name, text in NOT_SPECS.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "spec.yaml").write_text((MODELS / "poly.yaml").read_text())
    done = run_hook(*NOT_SPECS, "spec.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in NOT_SPECS:
        assert f"note: skipped {name}: not a specgrad spec" in done.stderr
    assert "1 of 1 spec(s) valid" in done.stderr


def test_specs_are_still_checked_even_when_broken(tmp_path):
    """A file with a top-level specgrad: or extends: key is a spec, whatever else is wrong with it."""
    (tmp_path / "broken.yaml").write_text("specgrad: 1\nname: x\ndata: {source: synthetic\n")
    (tmp_path / "child.yaml").write_text("extends: nowhere.yaml\nname: child\n")
    (tmp_path / "incomplete.yaml").write_text("specgrad: 1\nname: x\n")
    done = run_hook("broken.yaml", "child.yaml", "incomplete.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert "note:" not in done.stderr and "0 of 3 spec(s) valid" in done.stderr
    assert (
        "broken.yaml:" in done.stdout + done.stderr
        and "child.yaml:1:10: error: no such file" in done.stdout + done.stderr
    )


def test_without_the_flag_every_file_named_is_a_spec(tmp_path):
    """`specgrad validate FILE` (CI, a user) stays strict: a file that is not a spec is an error."""
    (tmp_path / "list.yaml").write_text(NOT_SPECS["list.yaml"])
    done = run_cli("validate", "list.yaml", cwd=tmp_path)
    assert done.returncode == 1 and "a spec must be a mapping of keys" in done.stdout + done.stderr

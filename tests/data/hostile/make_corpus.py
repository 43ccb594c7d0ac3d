"""Writes the hostile-input corpus: cases/<name>/ (the files of each case) and manifest.yaml (how to run it
and what must come out). Run it again after editing; the output is committed, so a review sees every case.

    python tests/data/hostile/make_corpus.py

Placeholders, replaced by tests/test_hostile.py when it copies a case into a fresh folder (the root):
``@OUTSIDE@`` is a folder next to the root, outside it, holding planted secrets (secret.env, secret.yaml,
id_rsa, secret.csv, secret.npz), each with a unique token that must never be printed; ``@INROOT@`` is a
second token, written in files inside the root after more than a short excerpt's length of padding.
Cases that need what a repository cannot hold (FIFOs, sockets, symlinks, files of megabytes) name a
``setup`` that the test runs in the root first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

HERE = Path(__file__).parent

BASE = """\
specgrad: 1
name: hostile
seed: 0
data:
  source: synthetic
  function: sin(3*x)
  n: 20
model:
  inputs: {x: []}
  params:
    k: {shape: [3], init: zeros}
  nodes:
    - phi: powers(x, 2)
    - y_hat: phi @ k
  output: y_hat
loss: sse
optimizer: {type: sgd, lr: 1.0e-3}
train:
  steps: 3
  batch_size: full
"""
CSV_DATA = "data: {source: csv, path: %s, columns: {x: a, y: b}}"
OUTSIDE_REFUSED = "outside the folders a spec may read"
FORMATS = ("text", "json", "github")

cases: list[dict] = []


def case(name, files, rc=1, expect="", args=None, setup=None, exec_=False, bomb=False, forbid=()):
    assert not any(c["name"] == name for c in cases), name
    entry = {"name": name, "args": args or ["validate", "spec.yaml"], "rc": rc, "expect": expect}
    if setup:
        entry["setup"] = setup
    if exec_:
        entry["exec"] = True
    if bomb:
        entry["bomb"] = True
    if forbid:
        entry["forbid"] = list(forbid)
    entry["files"] = files
    cases.append(entry)


def spec(**replace_lines) -> str:
    """BASE with top-level sections replaced (``data="data: ..."``) or added."""
    text = BASE
    for key, line in replace_lines.items():
        start = text.find(f"\n{key}:")
        if start < 0:
            text += line + "\n"
            continue
        end = start + 1
        lines = text[start + 1 :].split("\n")
        n = 1
        while n < len(lines) and lines[n].startswith("  "):
            n += 1
        end = start + 1 + len("\n".join(lines[:n]))
        text = text[: start + 1] + line + text[end:]
    return text


def fmt(args, f):
    return [*args, "--format", f] if f != "text" else list(args)


# --- 12.1: nothing outside the root is read, whatever path leads there -----------------------------------------

SECRETS = ("secret.env", "secret.yaml", "id_rsa", "secret.csv")
for secret in SECRETS:
    for f in FORMATS:
        tag = f"{secret.replace('.', '_')}_{f}"
        case(
            f"leak_include_absolute_{tag}",
            {"spec.yaml": spec(loss=f"loss: {{include: @OUTSIDE@/{secret}}}")},
            expect=OUTSIDE_REFUSED,
            args=fmt(["validate", "spec.yaml"], f),
        )
        case(
            f"leak_include_relative_{tag}",
            {"spec.yaml": spec(loss=f"loss: {{include: ../outside/{secret}}}")},
            expect=OUTSIDE_REFUSED,
            args=fmt(["validate", "spec.yaml"], f),
        )
        case(
            f"leak_extends_absolute_{tag}",
            {"spec.yaml": f"extends: @OUTSIDE@/{secret}\nname: x\n"},
            expect=OUTSIDE_REFUSED,
            args=fmt(["validate", "spec.yaml"], f),
        )
        case(
            f"leak_extends_dotdot_{tag}",
            {"spec.yaml": f"extends: [ok.yaml, ../../../../../../../..@OUTSIDE@/{secret}]\n", "ok.yaml": BASE},
            expect=OUTSIDE_REFUSED,
            args=fmt(["validate", "spec.yaml"], f),
        )
        case(
            f"leak_nested_include_{tag}",
            {
                "spec.yaml": spec(
                    model="model:\n  inputs: {x: []}\n  params:\n    k: {include: _frag.yaml}\n"
                    "  nodes:\n    - y_hat: x * k\n  output: y_hat"
                ),
                "_frag.yaml": f"include: [@OUTSIDE@/{secret}]\n",
            },
            expect=OUTSIDE_REFUSED,
            args=fmt(["validate", "spec.yaml"], f),
        )
        case(
            f"leak_via_fragment_in_subfolder_{tag}",
            {
                "spec.yaml": spec(loss="loss: {include: sub/_frag.yaml}"),
                "sub/_frag.yaml": f"include: ../../outside/{secret}\n",
            },
            expect=OUTSIDE_REFUSED,
            args=fmt(["validate", "spec.yaml"], f),
        )

for f in FORMATS:
    case(
        f"leak_symlinked_file_include_{f}",
        {"spec.yaml": spec(loss="loss: {include: link.yaml}")},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
        setup={"symlink": {"link.yaml": "@OUTSIDE@/secret.env"}},
    )
    case(
        f"leak_symlinked_file_extends_{f}",
        {"spec.yaml": "extends: link.yaml\n"},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
        setup={"symlink": {"link.yaml": "@OUTSIDE@/secret.yaml"}},
    )
    case(
        f"leak_symlinked_folder_{f}",
        {"spec.yaml": spec(loss="loss: {include: linked/secret.yaml}")},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
        setup={"symlink": {"linked": "@OUTSIDE@"}},
    )
    case(
        f"leak_symlink_chain_{f}",
        {"spec.yaml": "extends: a.yaml\n"},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
        setup={"symlink": {"a.yaml": "b.yaml", "b.yaml": "@OUTSIDE@/id_rsa"}},
    )
    case(
        f"leak_data_csv_absolute_{f}",
        {"spec.yaml": spec(data=CSV_DATA % "@OUTSIDE@/secret.csv")},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
    )
    case(
        f"leak_data_csv_relative_{f}",
        {"spec.yaml": spec(data=CSV_DATA % "../outside/secret.csv")},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
    )
    case(
        f"leak_data_npz_{f}",
        {"spec.yaml": spec(data="data: {source: npz, path: @OUTSIDE@/secret.npz}")},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
    )
    case(
        f"leak_data_npy_{f}",
        {"spec.yaml": spec(data="data: {source: npy, fields: {x: @OUTSIDE@/secret.env, y: @OUTSIDE@/secret.env}}")},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
    )
    case(
        f"leak_data_symlink_{f}",
        {"spec.yaml": spec(data=CSV_DATA % "d.csv")},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
        setup={"symlink": {"d.csv": "@OUTSIDE@/secret.csv"}},
    )
    case(
        f"leak_set_include_{f}",
        {"spec.yaml": BASE},
        expect="unknown key 'include' in loss",
        args=fmt(["validate", "spec.yaml", "--set", "loss={include: @OUTSIDE@/secret.yaml}"], f),
    )
    case(
        f"leak_etc_passwd_{f}",
        {"spec.yaml": spec(loss="loss: {include: /etc/passwd}")},
        expect=OUTSIDE_REFUSED,
        args=fmt(["validate", "spec.yaml"], f),
    )
    # inside the root: a file that is not YAML is quoted no further than a short excerpt
    case(
        f"excerpt_non_yaml_in_root_{f}",
        {"spec.yaml": spec(loss="loss: {include: notes.env}"), "notes.env": "PADDING_" + "x" * 60 + "=@INROOT@\n"},
        expect="a mapping",
        args=fmt(["validate", "spec.yaml"], f),
        forbid=["@INROOT@"],
    )
    case(
        f"excerpt_long_unknown_optimizer_{f}",
        {"spec.yaml": spec(optimizer="optimizer: {type: " + "a" * 80 + "@INROOT@, lr: 0.1}")},
        expect="unknown optimizer",
        args=fmt(["validate", "spec.yaml"], f),
        forbid=["@INROOT@"],
    )
    case(
        f"excerpt_long_unknown_key_{f}",
        {"spec.yaml": BASE + "z" * 90 + "@INROOT@: 1\n"},
        expect="unknown key",
        args=fmt(["validate", "spec.yaml"], f),
        forbid=["@INROOT@"],
    )

case(
    "leak_train_data_outside",
    {"spec.yaml": spec(data=CSV_DATA % "@OUTSIDE@/secret.csv")},
    expect=OUTSIDE_REFUSED,
    args=["train", "spec.yaml", "--run-dir", "run", "--quiet"],
    exec_=True,
)
case(
    "leak_train_include_outside",
    {"spec.yaml": spec(loss="loss: {include: @OUTSIDE@/secret.yaml}")},
    expect=OUTSIDE_REFUSED,
    args=["train", "spec.yaml", "--run-dir", "run", "--quiet"],
    exec_=True,
)
case(
    "leak_config_extends_outside",
    {"spec.yaml": "extends: @OUTSIDE@/secret.yaml\n"},
    expect=OUTSIDE_REFUSED,
    args=["config", "spec.yaml"],
    exec_=True,
)
case(
    "root_flag_allows_outside",
    {"spec.yaml": "extends: @OUTSIDE@/base.yaml\n"},
    rc=0,
    expect="1 of 1 spec(s) valid",
    args=["validate", "spec.yaml", "--root", "@OUTSIDE@"],
    setup={"outside_base": True},
)
case(
    "root_flag_still_no_leak",
    {"spec.yaml": spec(loss="loss: {include: @OUTSIDE@/secret.env}")},
    expect="must be",
    args=["validate", "spec.yaml", "--root", "@OUTSIDE@"],
)

# --- 12.2: bombs (generated at test time: see tests/test_hostile.py SETUPS) ---------------------------------------

for name, expect in [
    ("string_doubling_40", "references write more than"),
    ("string_doubling_1_line", "references write more than"),
    ("list_doubling", "values once"),
    ("mapping_doubling", "values once"),
    ("extends_doubling_30", "unknown key 'v0'"),
    ("include_doubling_30", "1 of 1 spec(s) valid"),
    ("alias_billion_laughs", "spec too large"),
    ("merge_key_bomb", "spec too large"),
    ("flow_list_9mb", "spec too large"),
    ("many_keys", "spec too large"),
    ("long_string_9mb", "missing key"),
    ("comment_9mb", "missing key"),
    ("over_10mib", "spec too large"),
    ("deep_flow_lists", "nesting deeper"),
    ("deep_mappings", "nesting deeper"),
    ("long_line_9mb", "spec too large"),
    ("formula_9mb", "formula too long"),
    ("references_in_long_string", "references write more"),
    ("many_references_small", "1 of 1 spec(s) valid"),
    ("nested_reference_lists", "values once"),
]:
    case(
        f"bomb_{name}",
        {"spec.yaml": BASE},
        expect=expect,
        setup={"bomb": name},
        bomb=True,
        rc=0 if name in ("include_doubling_30", "many_references_small") else 1,
    )

# --- 12.3: nothing recurses with the input -------------------------------------------------------------------------

for name, expect in [
    ("reference_chain_330", "chain of more than 64 references"),
    ("reference_chain_2000", "chain of more than 64 references"),
    ("include_chain_60", "more than 32 files in one chain"),
    ("extends_chain_60", "more than 32 files in one chain"),
    ("include_nesting_grows", "nesting deeper than 100 levels after"),
    ("formula_480_terms", "formula nested deeper than 100"),
    ("formula_5000_minus", "formula nested deeper"),
    ("formula_300_parentheses", "nested"),
    ("formula_300_calls", "nested"),
    ("formula_power_tower", "formula nested deeper"),
    ("set_path_490_parts", "at most 100 parts"),
    ("set_path_5000_parts", "at most 100 parts"),
    ("reference_path_490_parts", "at most 100 parts"),
]:
    # a --set flag that cannot be a key path is a usage error (exit 2), like an unknown flag
    case(
        f"deep_{name}",
        {"spec.yaml": BASE},
        rc=2 if name.startswith("set_") else 1,
        expect=expect,
        setup={"deep": name},
        bomb=True,
    )

for name, args_set, expect in [
    ("set_double_minus_index", "model.nodes.--1.phi=x", "cannot set"),
    ("set_superscript_key", "a.\u00b2=1", "unknown key"),
    ("set_superscript_index", "model.nodes.\u00b2.phi=x", "cannot set"),
    ("set_huge_index", "model.nodes.99999999999999999999.phi=x", "cannot set"),
    ("set_empty_part", "model..phi=x", "empty name"),
    ("set_no_equals", "model.nodes", "expected --set KEY=VALUE"),
    ("set_python_tag", "vars.x=!!python/object/apply:os.system [id]", "not allowed"),
    ("set_unterminated", "vars.x=[1, 2", "cannot parse value"),
]:
    # a mistake in the flag itself exits 2 (usage); a well-formed path the spec lacks is the spec's error (1)
    case(
        f"path_{name}",
        {"spec.yaml": BASE},
        rc=1 if name == "set_superscript_key" else 2,
        expect=expect,
        args=["validate", "spec.yaml", "--set", args_set],
    )

for name, text, expect in [
    ("reference_superscript", "vars: {a: 1}\nname: '${vars.\u00b2}'", "refers to nothing"),
    ("reference_double_minus", "vars: {a: [1]}\nname: '${vars.a.--1}'", "refers to nothing"),
    ("reference_empty", "name: '${}'", "refers to nothing"),
    ("reference_cycle", "vars: {a: '${vars.b}', b: '${vars.a}'}\nname: '${vars.a}'", "reference cycle"),
    ("reference_self", "vars: {a: '${vars.a}'}", "reference cycle"),
    ("reference_to_mapping_in_text", "name: 'x${model}'", "only a string"),
    ("reference_long_name", "name: '${vars." + "q" * 500 + "@INROOT@}'", "refers to nothing"),
]:
    case(f"ref_{name}", {"spec.yaml": spec(name=text)}, expect=expect, forbid=["@INROOT@"])

for name, formula, expect in [
    ("literal_400_digits", "phi @ k * 1" + "0" * 400, "integer too large"),
    ("power_tower_constant", "phi @ k * 9 ** 9 ** 9 ** 9", "overflows"),
    ("float_overflow_literal", "phi @ k * 1e999", "not a finite"),
    ("constant_overflow_product", "phi @ k * (1e200 * 1e200)", "overflows"),
    ("constant_division_by_zero", "phi @ k * (1 / 0)", "division by zero"),
    ("negative_root_constant", "phi @ k * (-8) ** 0.5", "no real value"),
    ("attribute_400_digits", None, "integer too large"),
    ("huge_exponent_of_one", "phi @ k * 1 ** 99999999999", ""),
    ("lambda", "(lambda: 1)()", "not allowed"),
    ("dunder_attribute", "x.__class__", "not allowed"),
    ("long_unknown_name", "phi @ k * " + "n" * 100 + "@INROOT@", "undefined name"),
    ("string_subscript", "'a' * 10 ** 9", ""),
]:
    nodes = (
        "model:\n  inputs: {x: []}\n  params:\n    k: {shape: [3], init: zeros}\n  nodes:\n"
        "    - phi: powers(x, 2)\n    - y_hat: "
        + (formula if formula else "powers(x, 1" + "0" * 400 + ") @ k")
        + "\n  output: y_hat"
    )
    case(
        f"formula_{name}",
        {"spec.yaml": spec(model=nodes)},
        rc=0 if name == "huge_exponent_of_one" else 1,
        expect=expect,
        forbid=["@INROOT@"],
    )

for name, line, expect in [
    ("yaml_int_400_digits", "data: {source: synthetic, function: sin(x), n: 1" + "0" * 400 + "}", "64-bit"),
    ("yaml_int_5000_digits", "data: {source: synthetic, function: sin(x), n: 1" + "0" * 5000 + "}", "invalid"),
    ("yaml_inf", "data: {source: synthetic, function: sin(x), n: 20, noise: .inf}", "finite"),
    ("synthetic_formula_overflow", "data: {source: synthetic, function: 'x * 9 ** 9 ** 9 ** 9', n: 20}", "overflows"),
    ("synthetic_formula_deep", "data: {source: synthetic, function: '" + "-" * 5000 + "x', n: 20}", "nested deeper"),
]:
    case(f"number_{name}", {"spec.yaml": spec(data=line)}, expect=expect)

# --- 12.7: special files (made at test time) -----------------------------------------------------------------------

for name, files, args, expect in [
    ("fifo_as_spec", {}, ["validate", "pipe.yaml"], "FIFO"),
    ("fifo_as_include", {"spec.yaml": spec(loss="loss: {include: pipe.yaml}")}, None, "FIFO"),
    ("fifo_as_extends", {"spec.yaml": "extends: pipe.yaml\n"}, None, "FIFO"),
    ("fifo_as_csv", {"spec.yaml": spec(data=CSV_DATA % "pipe.yaml")}, None, "FIFO"),
    ("fifo_as_npz", {"spec.yaml": spec(data="data: {source: npz, path: pipe.yaml}")}, None, "FIFO"),
    (
        "fifo_train_csv",
        {"spec.yaml": spec(data=CSV_DATA % "pipe.yaml")},
        ["train", "spec.yaml", "--run-dir", "run", "--quiet"],
        "FIFO",
    ),
    ("fifo_config", {}, ["config", "pipe.yaml"], "FIFO"),
    ("dev_zero_as_spec", {}, ["validate", "/dev/zero"], "character device"),
    ("dev_zero_symlink_include", {"spec.yaml": spec(loss="loss: {include: zero.yaml}")}, None, OUTSIDE_REFUSED),
    (
        "dev_zero_with_root",
        {"spec.yaml": spec(loss="loss: {include: /dev/zero}")},
        ["validate", "spec.yaml", "--root", "/dev"],
        "character device",
    ),
    (
        "dev_zero_data_with_root",
        {"spec.yaml": spec(data=CSV_DATA % "/dev/zero")},
        ["validate", "spec.yaml", "--root", "/dev"],
        "character device",
    ),
    ("directory_as_include", {"spec.yaml": spec(loss="loss: {include: adir}"), "adir/x.txt": "x\n"}, None, "directory"),
    ("directory_as_extends", {"spec.yaml": "extends: adir\n", "adir/x.txt": "x\n"}, None, "directory"),
    ("directory_as_data", {"spec.yaml": spec(data=CSV_DATA % "adir"), "adir/x.txt": "x\n"}, None, "directory"),
    ("socket_as_include", {"spec.yaml": spec(loss="loss: {include: sock.yaml}")}, None, "socket"),
    ("socket_as_data", {"spec.yaml": spec(data=CSV_DATA % "sock.yaml")}, None, "socket"),
    ("socket_as_spec", {}, ["validate", "sock.yaml"], "socket"),
]:
    case(
        f"special_{name}",
        files,
        expect=expect,
        args=args,
        setup={"special": name},
        exec_=name in ("fifo_train_csv", "fifo_as_spec"),
    )

# --- 11.5 / 11.6: errors name the spec, paths resolve against their own file ---------------------------------------

BROKEN_BASE = BASE.replace("optimizer: {type: sgd, lr: 1.0e-3}", "optimizer: {type: sgd, lr: 1.0e-3, momentum: 0.9}")
for f in FORMATS:
    case(
        f"chain_broken_base_two_children_{f}",
        {
            "exp/a.yaml": "extends: ../_base.yaml\nname: a\n",
            "exp/b.yaml": "extends: ../_base.yaml\nname: b\n",
            "_base.yaml": BROKEN_BASE.replace("momentum: 0.9", "momentun: 0.9"),
        },
        args=fmt(["validate", "exp/a.yaml", "exp/b.yaml"], f),
        expect={
            "text": "exp/a.yaml: _base.yaml:17:",
            "json": '"spec": "exp/a.yaml"',
            "github": "file=exp/a.yaml,line=1,col=10::_base.yaml:17:",
        }[f],
    )
case(
    "chain_summary_names_failed_specs",
    {
        "a.yaml": "extends: _base.yaml\nname: a\n",
        "ok.yaml": BASE,
        "_base.yaml": BASE.replace("loss: sse", "loss: nope"),
    },
    args=["validate", "a.yaml", "ok.yaml"],
    expect="1 of 2 spec(s) valid; invalid: a.yaml",
)
case(
    "chain_include_in_subfolder_names_chain",
    {"spec.yaml": spec(optimizer="optimizer: {include: parts/_opt.yaml}"), "parts/_opt.yaml": "type: sgd\nlr: -1\n"},
    expect="spec.yaml: parts/_opt.yaml:2:5: error: optimizer.lr must be > 0, got -1 (included by spec.yaml:17:",
)
case(
    "data_path_relative_to_base",
    {
        "exp/child.yaml": "extends: ../_base.yaml\nname: child\n",
        "_base.yaml": spec(data=CSV_DATA % "data/d.csv"),
        "data/d.csv": "a,b\n1,2\n3,4\n5,6\n",
    },
    args=["validate", "exp/child.yaml"],
    rc=0,
    expect="1 of 1 spec(s) valid",
)
case(
    "data_path_missing_is_validate_error",
    {"spec.yaml": spec(data=CSV_DATA % "nope.csv")},
    expect="data file 'nope.csv' not found",
)

# --- YAML that a hostile author might try --------------------------------------------------------------------------

for name, text, expect in [
    ("python_object_tag", BASE + "vars: !!python/object/apply:os.system ['echo @INROOT@']\n", "not allowed"),
    ("python_name_tag", BASE + "vars: !!python/name:os.system\n", "not allowed"),
    ("binary_tag", BASE + "vars: !!binary aGVsbG8=\n", "not allowed"),
    ("local_tag", BASE + "vars: !secret x\n", "not allowed"),
    ("recursive_anchor", BASE + "vars: &a [*a]\n", ""),
    ("merge_of_scalar", BASE + "vars: {<<: 1}\n", "merge key"),
    ("boolean_key", BASE + "on: 1\n", "keys must be strings"),
    ("duplicate_key", BASE + "name: twice\n", "duplicate key"),
    ("two_documents", BASE + "---\nname: b\n", "exactly one YAML document"),
    ("top_level_list", "- 1\n- 2\n", "mapping"),
    ("empty_file", "", "empty"),
    ("nul_byte", BASE + 'vars: {a: "x\0y"}\n', "not allowed in YAML"),
    ("tab_indent", BASE + "vars:\n\ta: 1\n", "invalid YAML"),
    ("long_key_400k", BASE + "k" * 400_000 + ": 1\n", ""),
    ("unknown_version", BASE.replace("specgrad: 1", "specgrad: 99"), "unsupported spec format version"),
    ("include_not_a_mapping", spec(loss="loss: {include: _list.yaml}"), ""),
    ("include_name_nul", spec(loss='loss: {include: "a\\0b"}'), "names no possible file"),
    ("include_name_huge", spec(loss="loss: {include: " + "a" * 5000 + "}"), "names no possible file"),
    ("include_number", spec(loss="loss: {include: 5}"), "must be a file name"),
    ("extends_empty_list", "extends: []\n" + BASE, "must be a file name"),
]:
    files = {"spec.yaml": text}
    if name == "include_not_a_mapping":
        files["_list.yaml"] = "- @INROOT@\n"
    case(f"yaml_{name}", files, expect=expect, forbid=["@INROOT@"])
case("yaml_invalid_utf8", {}, expect="not valid UTF-8", setup={"bytes": {"spec.yaml": "c3BlY2dyYWQ6IDEK/w=="}})


def main() -> None:
    out = HERE / "cases"
    if out.exists():
        shutil.rmtree(out)
    manifest = []
    for c in cases:
        folder = out / c["name"]
        folder.mkdir(parents=True)
        for rel, text in c.pop("files").items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text, encoding="utf-8")
        if not any(folder.iterdir()):  # git keeps no empty folder: say where this case's files come from
            (folder / "README").write_text(
                "This case's files (a FIFO, a socket, raw bytes...) are made by tests/test_hostile.py at test time.\n",
                encoding="utf-8",
            )
        manifest.append(c)
    header = "# Generated by make_corpus.py: each case's command, expected exit code and a fragment of its output.\n"
    (HERE / "manifest.yaml").write_text(
        header + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8"
    )
    print(f"{len(manifest)} cases")


if __name__ == "__main__":
    main()

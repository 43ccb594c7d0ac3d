"""File paths in a spec's ``data`` section: one rule for relative paths, and the checks ``validate`` makes.

A relative path resolves against the folder of the file that declares it, as ``extends`` and ``include`` do,
so a base naming ``data/train.csv`` next to itself works for a child in another folder. Composition rewrites
such a path, declared in a base or a fragment, relative to the top-level spec's folder (which is where the
data loader and a run's ``data.json`` resolve paths), and ``validate`` then checks that every data file is a
regular file inside the folders the spec may read.

Which settings are paths comes from the data sources' schemas: a setting whose description starts with
"file path" (``specgrad.data.files.PATH``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from specgrad.base.diagnostics import Diagnostic, excerpt
from specgrad.base.fileio import not_regular
from specgrad.data.prepare import data_folder
from specgrad.data.sources import SOURCES

__all__ = ["data_file_diagnostics", "data_path_keys", "default_roots", "inside", "relocate_data_paths"]


def inside(real: str, roots) -> bool:
    """Whether the resolved path ``real`` is one of ``roots`` or below one."""
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def default_roots(spec_path, extra=()) -> tuple[str, ...]:
    """The folders a spec may read files from: the working directory, the spec's own folder, and ``extra``
    (``--root``), each with symlinks resolved."""
    folders = [os.getcwd(), os.path.dirname(os.path.abspath(os.fsdecode(spec_path))), *map(os.fsdecode, extra)]
    return tuple(dict.fromkeys(os.path.realpath(f) for f in folders))


def _is_path(schema) -> bool:
    return isinstance(schema, dict) and str(schema.get("description", "")).startswith("file path")


def data_path_keys(settings) -> list[tuple]:
    """The keys (below ``data``) of the settings that are file paths, for the source ``settings`` names."""
    if not isinstance(settings, dict) or not isinstance(settings.get("source"), str):
        return []
    source = SOURCES.entries.get(settings["source"])
    if source is None:
        return []
    keys: list[tuple[str, ...]] = []
    for name, schema in source.properties.items():
        if _is_path(schema) and isinstance(settings.get(name), str):
            keys.append((name,))
        elif (
            isinstance(schema, dict)
            and _is_path(schema.get("additionalProperties"))
            and isinstance(settings.get(name), dict)
        ):
            keys += [(name, k) for k, v in settings[name].items() if isinstance(v, str)]
    return keys


def relocate_data_paths(root, spec_file: str):
    """``root`` (a composed tree of Values) with each relative data path that another file declared made
    relative to ``spec_file``'s folder, so it names the file its own file meant."""
    data = root.value.get("data") if isinstance(root.value, dict) else None
    if data is None or not isinstance(data.value, dict):
        return root
    plain = {
        k: (v.value if not isinstance(v.value, dict) else {kk: vv.value for kk, vv in v.value.items()})
        for k, v in data.value.items()
    }
    here = os.path.dirname(spec_file) or "."
    new_data = data
    for key in data_path_keys(plain):
        node = data.value[key[0]] if len(key) == 1 else data.value[key[0]].value[key[1]]
        declared = node.loc.file
        if (
            os.path.isabs(node.value)
            or declared == spec_file
            or declared.startswith("--set ")
            or not os.path.exists(os.path.dirname(declared) or ".")
        ):
            continue
        moved = os.path.relpath(os.path.join(os.path.dirname(declared), node.value), here)
        if moved == node.value:
            continue
        node = replace(node, value=moved, loc=node.loc.noted(f"{excerpt(node.value, 200)} relative to {declared}"))
        if len(key) == 1:
            new_data = replace(new_data, value={**new_data.value, key[0]: node})
        else:
            parent = new_data.value[key[0]]
            new_data = replace(
                new_data, value={**new_data.value, key[0]: replace(parent, value={**parent.value, key[1]: node})}
            )
    if new_data is data:
        return root
    return replace(root, value={**root.value, "data": new_data})


def data_file_diagnostics(doc) -> list[Diagnostic]:
    """Every data file the spec names exists, is a regular file (not a FIFO, a device or a folder) and lies
    inside the folders the spec may read; checked by ``stat`` only, nothing is opened."""
    settings = doc.data.get("data")
    if not isinstance(settings, dict):
        return []  # data_path_keys names none
    # a run's spec.yaml resolves its data where data.json says; that folder must lie inside the roots too (a
    # copied run directory's data.json may name any folder: it widens nothing)
    spec_dir = Path(os.path.abspath(doc.file)).parent
    folder = str(data_folder(spec_dir))
    recorded = "" if folder == str(spec_dir) else f" (in {excerpt(folder, 200)}, where the run's data.json puts it)"
    roots = doc.roots
    out = []
    for key in data_path_keys(settings):
        value = settings[key[0]] if len(key) == 1 else settings[key[0]][key[1]]
        where = doc.loc(("data", *key))
        if "\0" in value or len(value) > 4096:
            out.append(Diagnostic(f"data: data file {excerpt(value)} is not a possible file name", where))
            continue
        full = os.path.join(folder, value)
        if roots and not inside(os.path.realpath(full), roots):
            out.append(
                Diagnostic(
                    f"data: data file {excerpt(value, 200)}{recorded} is outside the folders a spec may read "
                    f"({', '.join(roots)}); add --root DIR to allow another folder",
                    where,
                )
            )
            continue
        try:
            what = not_regular(os.stat(full).st_mode)
        except FileNotFoundError:
            out.append(Diagnostic(f"data: data file {excerpt(value, 200)} not found (looked for {full})", where))
            continue
        except OSError as e:
            out.append(Diagnostic(f"data: data file {excerpt(value, 200)} cannot be read: {e.strerror}", where))
            continue
        if what is not None:
            out.append(Diagnostic(f"data: data file {excerpt(value, 200)} is {what}, not a regular file", where))
    return out

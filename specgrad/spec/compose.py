"""Composition: one resolved spec from its file, the files it extends and includes, ``--set`` overrides and
``${path}`` references, every value keeping the place it came from.

The steps, each seeing the result of the one before:

1. ``include: FILE`` (or a list of files) in any mapping below the top: the fragment's mapping, with the
   including mapping's other keys merged on top.
2. ``extends: FILE`` (or a list) at the top: the bases merged in order, then this file on top.
3. ``--set KEY=VALUE`` in the order given: the value (YAML-typed) replaces the one at the dotted path
   (list indices allowed: ``model.nodes.0.phi``); ``null`` removes the key.
4. ``${path.to.value}`` references, resolved against the composed spec. A string that is only a reference
   takes the referenced value whole (a number stays a number); a reference inside a longer string is
   replaced by the value's text. ``$${`` writes a literal ``${``.

Merging follows JSON Merge Patch (RFC 7386): mappings merge key by key, a ``null`` removes the key, and
anything else -- lists included -- replaces the base's value whole. Paths of extended and included files are
relative to the file that names them. A value that replaced another remembers it ("overrides
base.yaml:12:5"), a referenced value remembers its source, and every message about the value repeats it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace


from specgrad.base.diagnostics import Diagnostic, Location, SpecError, did_you_mean
from specgrad.spec.load import MAX_VALUES, Document, load_file, load_string
from specgrad.spec.schema import FORMAT_VERSION

EXTENDS, INCLUDE = "extends", "include"


# --- a spec as a tree of located values --------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """One value with its place: ``value`` is a scalar, a list of Values or a dict of name -> Value."""
    value: object
    loc: Location
    key_loc: Location | None = None     # where the mapping key naming this value is written


def tree(doc: Document, path: tuple = ()) -> Value:
    data = _get(doc.data, path)
    if isinstance(data, dict):
        value = {k: tree(doc, path + (k,)) for k in data}
    elif isinstance(data, list):
        value = [tree(doc, path + (i,)) for i in range(len(data))]
    else:
        value = data
    return Value(value, doc.loc(path), doc.key_locations.get(path))


def document(root: Value, file: str) -> Document:
    """The plain data and location tables the later stages read."""
    doc = Document(None, file)

    def plain(node: Value, path: tuple):
        doc.locations[path] = node.loc
        if node.key_loc is not None:
            doc.key_locations[path] = node.key_loc
        if isinstance(node.value, dict):
            return {k: plain(v, path + (k,)) for k, v in node.value.items()}
        if isinstance(node.value, list):
            return [plain(v, path + (i,)) for i, v in enumerate(node.value)]
        return node.value

    doc.data = plain(root, ())
    return doc


def _get(data, path: tuple):
    for key in path:
        data = data[key]
    return data


def merge(base: Value | None, over: Value) -> Value | None:
    """``over`` merged onto ``base`` (RFC 7386); None when ``over`` is null, which removes the key."""
    if over.value is None:
        return None
    if isinstance(over.value, dict):
        merged = dict(base.value) if base is not None and isinstance(base.value, dict) else {}
        for key, value in over.value.items():
            result = merge(merged.get(key), value)
            if result is None:
                merged.pop(key, None)
            else:
                merged[key] = result
        return Value(merged, over.loc, over.key_loc)
    if base is None:
        return over
    return replace(over, loc=_overriding(over.loc, base.loc))


def _overriding(new: Location, old: Location) -> Location:
    return Location(new.file, new.line, new.col, (*new.history, f"overrides {old}", *old.history))


# --- extends and include -------------------------------------------------------------------------------------


class _Composer:
    """Reads a spec file and every file it extends or includes; collects every problem before raising."""

    def __init__(self):
        self.errors: list[Diagnostic] = []
        self.files: dict[tuple, Value] = {}         # (real path, key) -> composed file, read once
        self.sizes: dict[int, tuple] = {}           # id -> (value, size once expanded), see ``size``

    def size(self, node: Value) -> int:
        """How many values ``node`` holds once written out. Composed trees share subtrees (a fragment
        included twice is one object), so this counts a diamond of includes without expanding it."""
        known = self.sizes.get(id(node))
        if known is None:
            children = node.value.values() if isinstance(node.value, dict) else \
                node.value if isinstance(node.value, list) else ()
            known = self.sizes[id(node)] = (node, 1 + sum(self.size(c) for c in children))
        return known[1]

    def _limit(self, node: Value, site: Location) -> Value:
        if self.size(node) > MAX_VALUES:
            raise SpecError.at(site, f"spec too large: more than {MAX_VALUES} values after extends and include")
        return node

    def file(self, name: str, stack: tuple = (), site: Location | None = None, key: str = EXTENDS) -> Value | None:
        """The file ``name`` with its own extends and includes merged in. A spec's top level extends; a
        fragment's top level, being included, may include in turn."""
        real = os.path.realpath(name)
        if (real, key) in self.files:
            return self.files[real, key]
        if real in stack:
            chain = " -> ".join(os.path.basename(p) for p in (*stack[stack.index(real):], real))
            self.errors.append(Diagnostic(f"'{name}' extends or includes itself: {chain}", site))
            return None
        if site is not None and not os.path.isfile(name):
            self.errors.append(Diagnostic(f"no such file '{name}'", site))
            return None
        doc = load_file(name)
        check_version(doc)
        stack = (*stack, real)
        root = self._includes(tree(doc), name, stack, top=key == EXTENDS)
        if key == EXTENDS and INCLUDE in root.value:
            self.errors.append(Diagnostic("the top level of a spec takes its bases with 'extends'; 'include' is "
                                          "for the mappings inside it", root.value[INCLUDE].key_loc))
        bases = root.value.pop(EXTENDS, None) if key == EXTENDS else None
        if bases is not None:
            base = self._merged(bases, name, stack, EXTENDS)
            root = self._limit(merge(base, root), bases.loc) if base is not None else root
        self.files[real, key] = root
        return root

    def _merged(self, names: Value, naming_file: str, stack: tuple, key: str) -> Value | None:
        """The files named by an ``extends`` or ``include`` value, merged in order."""
        items = names.value if isinstance(names.value, list) else [names]
        if not items or not all(isinstance(item.value, str) and item.value for item in items):
            self.errors.append(Diagnostic(f"'{key}' must be a file name or a list of file names", names.loc))
            return None
        out = None
        for item in items:
            path = os.path.normpath(os.path.join(os.path.dirname(naming_file), item.value))
            part = self.file(path, stack, item.loc, key)
            if part is not None:
                out = part if out is None else merge(out, part)
        return out

    def _includes(self, node: Value, naming_file: str, stack: tuple, top: bool = False) -> Value:
        """``node`` with every ``include`` below it replaced by the fragment it names."""
        if isinstance(node.value, list):
            return replace(node, value=[self._includes(v, naming_file, stack) for v in node.value])
        if not isinstance(node.value, dict):
            return node
        children = {k: self._includes(v, naming_file, stack) for k, v in node.value.items()
                    if top or k != INCLUDE}
        here = replace(node, value=children)
        if top or INCLUDE not in node.value:
            return here
        fragment = self._merged(node.value[INCLUDE], naming_file, stack, INCLUDE)
        return self._limit(merge(fragment, here), node.value[INCLUDE].loc) if fragment is not None else here


def check_version(doc: Document) -> None:
    """Each file that states a format version must state one this specgrad reads."""
    version = doc.data.get("specgrad") if isinstance(doc.data, dict) else None
    if version is not None and (version != FORMAT_VERSION or isinstance(version, bool)):
        shown = repr(version) if isinstance(version, str) else version
        raise SpecError.at(doc.loc(("specgrad",)),
                           f"unsupported spec format version {shown}; this specgrad reads version {FORMAT_VERSION}")


# --- --set ---------------------------------------------------------------------------------------------------


def parse_path(text: str) -> tuple:
    """``model.nodes.0.phi`` -> ("model", "nodes", 0, "phi")."""
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in text.strip().split("."))


def parse_override(text: str) -> tuple[tuple, object, Location]:
    """``KEY=VALUE`` -> (path, value, location of the value). The value is read by the spec loader, so it
    is typed and limited exactly like a value in a file (``2024-01-01`` stays a string)."""
    loc = Location(f"--set {text}", 1, 1)
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError.at(loc, "expected --set KEY=VALUE, e.g. --set optimizer.lr=0.01")
    path = parse_path(key)
    if any(p == "" for p in path):
        raise SpecError.at(loc, f"empty name in key path '{key}'")
    value_col = len(key) + 2
    if not raw.strip():
        return path, "", Location(loc.file, 1, value_col)
    prefix = "value: "
    try:
        doc = load_string(prefix + raw, loc.file)
    except SpecError as e:
        raise SpecError([Diagnostic(f"cannot parse value: {d.message}",
                                    Location(loc.file, 1, value_col + max(d.location.col - 1 - len(prefix), 0)))
                         for d in e.diagnostics]) from None
    if list(doc.data) != ["value"]:
        raise SpecError.at(Location(loc.file, 1, value_col), "cannot parse value: expected one value")
    return path, doc.data["value"], Location(loc.file, 1, value_col)


def _located(value, loc: Location) -> Value:
    if isinstance(value, dict):
        return Value({str(k): _located(v, loc) for k, v in value.items()}, loc, loc)
    if isinstance(value, list):
        return Value([_located(v, loc) for v in value], loc, loc)
    return Value(value, loc, loc)


def set_value(root: Value, path: tuple, new: Value | None) -> Value:
    """``root`` with the value at ``path`` replaced by ``new`` (None removes it); missing mappings are made."""
    if not path:
        return new
    key, rest = path[0], path[1:]
    if isinstance(root.value, list):
        if not isinstance(key, int) or not -len(root.value) <= key < len(root.value):
            raise _PathError(f"index {key} is out of range for a list of {len(root.value)}")
        items = list(root.value)
        if new is None and not rest:
            raise _PathError("an item cannot be removed from a list; set the whole list")
        items[key] = set_value(items[key], rest, new)
        return replace(root, value=items)
    if not isinstance(root.value, dict):
        raise _PathError("is not a mapping or a list")
    children = dict(root.value)
    old = children.get(str(key))
    if not rest:
        if new is None:
            children.pop(str(key), None)
        else:
            children[str(key)] = replace(new, loc=_overriding(new.loc, old.loc)) if old is not None else new
    else:
        child = old if old is not None else Value({}, new.loc if new else root.loc, new.loc if new else None)
        children[str(key)] = set_value(child, rest, new)
    return replace(root, value=children)


class _PathError(Exception):
    pass


def apply_overrides(root: Value, overrides) -> Value:
    errors = []
    for text in overrides:
        try:
            path, value, loc = parse_override(text)
            root = set_value(root, path, None if value is None else _located(value, loc))
        except SpecError as e:
            errors.extend(e.diagnostics)
        except _PathError as e:
            errors.append(Diagnostic(f"cannot set '{text.partition('=')[0]}': {e}", Location(f"--set {text}", 1, 1)))
    if errors:
        raise SpecError(errors)
    return root


# --- ${...} references -----------------------------------------------------------------------------------------

REFERENCE = re.compile(r"\$\$\{|\$\{([^{}]*)\}")


class _References:
    """Resolves every ``${path}`` in a tree against the tree itself; a cycle or a dangling path is an error."""

    def __init__(self, root: Value):
        self.root = root
        self.done: dict[tuple, Value] = {}
        self.active: list[tuple] = []
        self.errors: list[Diagnostic] = []

    def resolve(self, node: Value, path: tuple) -> Value:
        if path in self.done:
            return self.done[path]
        if isinstance(node.value, dict):
            out = replace(node, value={k: self.resolve(v, path + (k,)) for k, v in node.value.items()})
        elif isinstance(node.value, list):
            out = replace(node, value=[self.resolve(v, path + (i,)) for i, v in enumerate(node.value)])
        elif isinstance(node.value, str) and "${" in node.value:
            out = self._string(node, path)
        else:
            out = node
        self.done[path] = out
        return out

    def _string(self, node: Value, path: tuple) -> Value:
        if path in self.active:
            cycle = " -> ".join("${" + _dotted(p) + "}" for p in self.active[self.active.index(path):])
            raise _Cycle(f"reference cycle: {cycle} -> ${{{_dotted(path)}}}")
        self.active.append(path)
        try:
            whole = REFERENCE.fullmatch(node.value)
            if whole and whole.group(1) is not None:
                target = self._lookup(whole.group(1), node.loc)
                if target is None:
                    return node
                loc = Location(node.loc.file, node.loc.line, node.loc.col,
                               (*node.loc.history, f"value of ${{{whole.group(1)}}} from {target.loc}",
                                *target.loc.history))
                return replace(target, loc=loc, key_loc=node.key_loc)
            notes, failed = [], False

            def text_of(match):
                nonlocal failed
                if match.group(1) is None:
                    return "${"
                target = self._lookup(match.group(1), node.loc)
                if target is None:
                    failed = True
                    return match.group(0)
                if isinstance(target.value, (dict, list)):
                    failed = True
                    self.errors.append(Diagnostic(f"${{{match.group(1)}}} is a {'mapping' if isinstance(target.value, dict) else 'list'}; "
                                                  "only a string that is nothing but the reference can take it",
                                                  node.loc))
                    return match.group(0)
                notes.append(f"${{{match.group(1)}}} from {target.loc}")
                return _text(target.value)

            text = REFERENCE.sub(text_of, node.value)
            if failed:
                return node
            return replace(node, value=text, loc=Location(node.loc.file, node.loc.line, node.loc.col,
                                                           (*node.loc.history, *notes)))
        except _Cycle as cycle:
            if self.active[0] != path:
                raise
            self.errors.append(Diagnostic(str(cycle), node.loc))
            return node
        finally:
            self.active.pop()

    def _lookup(self, text: str, site: Location) -> Value | None:
        path = parse_path(text)
        node, walked = self.root, ()
        for key in path:
            node = self.resolve(node, walked) if isinstance(node.value, str) else node
            if isinstance(node.value, dict) and key in node.value:
                node = node.value[key]
            elif isinstance(node.value, list) and isinstance(key, int) and -len(node.value) <= key < len(node.value):
                node = node.value[key]
            else:
                choices = list(node.value) if isinstance(node.value, dict) else []
                self.errors.append(Diagnostic(
                    f"${{{text}}} refers to nothing: {_dotted(walked + (key,))} is not defined"
                    f"{did_you_mean(str(key), choices)}", site))
                return None
            walked += (key,)
        return self.resolve(node, walked)


class _Cycle(Exception):
    pass


def _dotted(path: tuple) -> str:
    return ".".join(map(str, path))


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def resolve_references(root: Value) -> Value:
    refs = _References(root)
    out = refs.resolve(root, ())
    if refs.errors:
        raise SpecError(refs.errors)
    return out


# --- the whole composition ---------------------------------------------------------------------------------------


def compose(path, overrides=(), values=()) -> Document:
    """The resolved spec at ``path``: extends and includes merged, ``--set`` applied, references resolved.

    ``values`` are ``(path, value, Location)`` triples set after the overrides, each located where it is
    written (a sweep trial's parameters, at their place in the sweep file)."""
    name = os.fsdecode(path)
    composer = _Composer()
    root = composer.file(name)
    if composer.errors:
        raise SpecError(composer.errors)
    root = apply_overrides(root, overrides)
    for key, value, loc in values:
        try:
            root = set_value(root, tuple(key), None if value is None else _located(value, loc))
        except _PathError as e:
            raise SpecError.at(loc, f"cannot set '{_dotted(key)}': {e}") from None
    return document(resolve_references(root), name)

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
from collections.abc import Callable
from dataclasses import dataclass, replace

import yaml

from specgrad.base.diagnostics import (
    Diagnostic,
    Location,
    SpecError,
    capped_history,
    did_you_mean,
    excerpt,
)
from specgrad.spec.load import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_VALUES,
    Document,
    load_file,
    load_string,
)
from specgrad.spec.paths import default_roots, inside, relocate_data_paths
from specgrad.spec.schema import FORMAT_VERSION

EXTENDS, INCLUDE = "extends", "include"
MAPPING = "<mapping>"  # the file name of a spec given as a mapping (``compose_mapping``)
MAX_CHAIN = 32
"""Most files in one chain of extends and includes (a spec, its base, the base's base...)."""
MAX_REFERENCE_CHAIN = 64
"""Most ``${...}`` references followed to resolve one value (a refers to b, which refers to c...)."""
MAX_TEXT = MAX_BYTES
"""Most characters of text the ``${...}`` references of one spec may write, all strings together."""


# --- a spec as a tree of located values --------------------------------------------------------------------


Scalar = str | int | float | bool | None
"""What a YAML scalar loads as (the loader refuses every other kind)."""


@dataclass(frozen=True)
class Value:
    """One value with its place: ``value`` is a scalar, a list of Values or a dict of name -> Value."""

    value: Scalar | list[Value] | dict[str, Value]
    loc: Location
    key_loc: Location | None = None  # where the mapping key naming this value is written


def tree(doc: Document, path: tuple = ()) -> Value:
    data = _get(doc.data, path)
    value: Scalar | list[Value] | dict[str, Value]
    if isinstance(data, dict):
        value = {k: tree(doc, path + (k,)) for k in data}
    elif isinstance(data, list):
        value = [tree(doc, path + (i,)) for i in range(len(data))]
    else:
        value = data
    return Value(value, doc.loc(path), doc.key_locations.get(path))


def document(root: Value, file: str) -> Document:
    """The plain data and location tables the later stages read (``root`` is at most MAX_DEPTH deep)."""
    doc = Document({}, file)

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
    return Location(new.file, new.line, new.col, capped_history((*new.history, f"overrides {old}", *old.history)))


def _measure(node: Value, known: dict) -> tuple[int, int]:
    """(values, depth) of ``node`` once written out, without recursion (a tree may be deep) and memoized by
    id (composed trees share subtrees: a fragment included twice is one object, counted without expanding)."""
    stack = [(node, False)]
    while stack:
        item, children_done = stack.pop()
        if id(item) in known:
            continue
        children = (
            list(item.value.values())
            if isinstance(item.value, dict)
            else item.value
            if isinstance(item.value, list)
            else []
        )
        if children_done or not children:
            sizes = [known[id(c)][1] for c in children]
            known[id(item)] = (item, (1 + sum(s[0] for s in sizes), 1 + max((s[1] for s in sizes), default=0)))
        else:
            stack.append((item, True))
            stack.extend((c, False) for c in children if id(c) not in known)
    return known[id(node)][1]


def attribute(diags, spec: str, origins: dict) -> list[Diagnostic]:
    """``diags`` naming ``spec`` wherever their place is in another file, with the chain of extends and
    includes that reached that file (so one broken base is reported once per spec it breaks)."""
    out = []
    for d in diags:
        loc = d.location
        # a --set problem is about the command line, which names no file; it reads the same for every spec
        if loc is None or loc.file == spec or d.spec is not None or loc.file.startswith("--set "):
            out.append(d)
            continue
        chain: list[tuple[str, Location]] = []
        file = loc.file
        while file in origins and len(chain) < MAX_CHAIN:
            how, site = origins[file]
            chain.append((how, site))
            file = site.file
        out.append(replace(d, spec=spec, chain=tuple(chain)))
    return out


# --- extends and include -------------------------------------------------------------------------------------


class _Composer:
    """Reads a spec file and every file it extends or includes; collects every problem before raising."""

    def __init__(self, roots: tuple[str, ...] | list[str] = ()) -> None:
        self.errors: list[Diagnostic] = []
        self.files: dict[tuple, Value] = {}  # (real path, key) -> composed file, read once
        self.sizes: dict[int, tuple] = {}  # id -> (value, (size, depth) once expanded), see ``_measure``
        self.roots = tuple(roots)
        self.origins: dict[str, tuple[str, Location]] = {}  # file name -> how it was first reached, and where
        self.read = 0  # values in every file read so far: many fragments each within the limits add up

    def size(self, node: Value) -> int:
        return _measure(node, self.sizes)[0]

    def _limit(self, node: Value, site: Location) -> Value:
        size, depth = _measure(node, self.sizes)
        if size > MAX_VALUES:
            raise SpecError.at(site, f"spec too large: more than {MAX_VALUES} values after extends and include")
        if depth > MAX_DEPTH:
            raise SpecError.at(site, f"nesting deeper than {MAX_DEPTH} levels after extends and include")
        return node

    def file(
        self, name: str, stack: tuple = (), site: Location | None = None, key: str = EXTENDS, depth: int = 0
    ) -> Value | None:
        """The file ``name`` with its own extends and includes merged in. A spec's top level extends; a
        fragment's top level, being included, may include in turn."""
        real = os.path.realpath(name)
        if site is not None and not inside(real, self.roots):
            # refused by name, before anything reads it: a spec from a pull request must not read ~/.ssh
            self.errors.append(
                Diagnostic(
                    f"{excerpt(name, 200)} is outside the folders a spec may read ({', '.join(self.roots)}); "
                    "extends and include stay inside them (add --root DIR to allow another folder)",
                    site,
                )
            )
            return None
        if (real, key) in self.files:
            return self.files[real, key]
        if real in stack:
            chain = " -> ".join(os.path.basename(p) for p in (*stack[stack.index(real) :], real))
            self.errors.append(
                Diagnostic(f"{excerpt(name, 200)} extends or includes itself: {excerpt(chain, 400, False)}", site)
            )
            return None
        if len(stack) >= MAX_CHAIN:
            self.errors.append(Diagnostic(f"more than {MAX_CHAIN} files in one chain of extends and include", site))
            return None
        if site is not None and not os.path.lexists(name):
            self.errors.append(Diagnostic(f"no such file {excerpt(name, 200)}", site))
            return None
        if site is not None:
            self.origins.setdefault(name, ("extended by" if key == EXTENDS else "included by", site))
        doc = load_file(name)
        self.read += len(doc.locations)
        if self.read > MAX_VALUES:  # refused before another file is read, not once all are merged
            raise SpecError.at(
                site or Location(name, 1, 1), f"spec too large: more than {MAX_VALUES} values in the files it reads"
            )
        root = self.document(doc, name, (*stack, real), key, depth)
        self.files[real, key] = root
        return root

    def document(self, doc: Document, name: str, stack: tuple, key: str = EXTENDS, depth: int = 0) -> Value:
        """A loaded document (the file ``name``, or a mapping given as one) with its extends and includes
        merged in; relative names in it resolve against ``name``'s folder. ``stack`` ends with ``name``."""
        check_version(doc)
        root = self._includes(tree(doc), name, stack, top=key == EXTENDS, depth=depth)
        assert isinstance(root.value, dict), "load_string refuses a document that is not a mapping"
        if key == EXTENDS and INCLUDE in root.value:
            self.errors.append(
                Diagnostic(
                    "the top level of a spec takes its bases with 'extends'; 'include' is for the mappings inside it",
                    root.value[INCLUDE].key_loc,
                )
            )
        bases = root.value.pop(EXTENDS, None) if key == EXTENDS else None
        if bases is not None:
            base = self._merged(bases, name, stack, EXTENDS, depth)
            if base is not None:
                merged = merge(base, root)
                assert merged is not None, "merge is None only for a null, and root is a mapping"
                root = self._limit(merged, bases.loc)
        return root

    def _merged(self, names: Value, naming_file: str, stack: tuple, key: str, depth: int = 0) -> Value | None:
        """The files named by an ``extends`` or ``include`` value, merged in order."""
        items = names.value if isinstance(names.value, list) else [names]
        files = [item.value for item in items if isinstance(item.value, str) and item.value]
        if not items or len(files) != len(items):
            self.errors.append(Diagnostic(f"'{key}' must be a file name or a list of file names", names.loc))
            return None
        out = None
        for item, file in zip(items, files):
            if "\0" in file or len(file) > 4096:
                self.errors.append(Diagnostic(f"'{key}' names no possible file: {excerpt(file)}", item.loc))
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(naming_file), file))
            part = self.file(path, stack, item.loc, key, depth)
            if part is not None:
                out = part if out is None else merge(out, part)
        return out

    def _includes(self, node: Value, naming_file: str, stack: tuple, top: bool = False, depth: int = 0) -> Value:
        """``node`` with every ``include`` below it replaced by the fragment it names. ``depth`` is where
        ``node`` lands in the composed spec, counted across files, so a chain of fragments that each nest a
        little is refused before it recurses deeper than MAX_DEPTH levels in all."""
        if isinstance(node.value, list):
            return replace(node, value=[self._includes(v, naming_file, stack, depth=depth + 1) for v in node.value])
        if not isinstance(node.value, dict):
            return node
        if depth >= MAX_DEPTH and node.value:
            raise SpecError.at(node.loc, f"nesting deeper than {MAX_DEPTH} levels after extends and include")
        children = {
            k: self._includes(v, naming_file, stack, depth=depth + 1)
            for k, v in node.value.items()
            if top or k != INCLUDE
        }
        here = replace(node, value=children)
        if top or INCLUDE not in node.value:
            return here
        fragment = self._merged(node.value[INCLUDE], naming_file, stack, INCLUDE, depth)
        if fragment is None:
            return here
        merged = merge(fragment, here)
        assert merged is not None, "merge is None only for a null, and here is a mapping"
        return self._limit(merged, node.value[INCLUDE].loc)


def check_version(doc: Document) -> None:
    """Each file that states a format version must state one this specgrad reads."""
    version = doc.data.get("specgrad") if isinstance(doc.data, dict) else None
    if version is not None and (version != FORMAT_VERSION or isinstance(version, bool)):
        shown = repr(version) if isinstance(version, str) else version
        raise SpecError.at(
            doc.loc(("specgrad",)),
            f"unsupported spec format version {shown}; this specgrad reads version {FORMAT_VERSION}",
        )


# --- --set ---------------------------------------------------------------------------------------------------


_INDEX = re.compile(r"-?[0-9]{1,9}")  # ASCII digits only: '²'.isdigit() is true, but int('²') fails


def parse_path(text: str) -> tuple:
    """``model.nodes.0.phi`` -> ("model", "nodes", 0, "phi"); at most MAX_DEPTH parts."""
    parts = text.strip().split(".", MAX_DEPTH)
    if len(parts) > MAX_DEPTH:
        raise _PathError(f"a key path has at most {MAX_DEPTH} parts")
    return tuple(int(p) if _INDEX.fullmatch(p) else p for p in parts)


def parse_override(text: str) -> tuple[tuple, object, Location]:
    """``KEY=VALUE`` -> (path, value, location of the value). The value is read by the spec loader, so it
    is typed and limited exactly like a value in a file (``2024-01-01`` stays a string)."""
    loc = Location(f"--set {text}", 1, 1)
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError.at(loc, "expected --set KEY=VALUE, e.g. --set optimizer.lr=0.01")
    try:
        path = parse_path(key)
    except _PathError as e:
        raise SpecError.at(loc, f"cannot set {excerpt(key)}: {e}") from None
    if any(p == "" for p in path):
        raise SpecError.at(loc, f"empty name in key path {excerpt(key)}")
    value_col = len(key) + 2
    if not raw.strip():
        return path, "", Location(loc.file, 1, value_col)
    prefix = "value: "
    try:
        doc = load_string(prefix + raw, loc.file)
    except SpecError as e:
        raise SpecError(
            [
                Diagnostic(
                    f"cannot parse value: {d.message}",
                    Location(loc.file, 1, value_col + max((d.location.col if d.location else 1) - 1 - len(prefix), 0)),
                )
                for d in e.diagnostics
            ]
        ) from None
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
        if new is None:
            raise _PathError("the whole spec cannot be removed")
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
            errors.append(
                Diagnostic(f"cannot set {excerpt(text.partition('=')[0])}: {e}", Location(f"--set {text}", 1, 1))
            )
    if errors:
        raise SpecError(errors)
    return root


# --- ${...} references -----------------------------------------------------------------------------------------

REFERENCE = re.compile(r"\$\$\{|\$\{([^{}]*)\}")


class _References:
    """Resolves every ``${path}`` in a tree against the tree itself; a cycle or a dangling path is an error.

    What the references write is bounded while it is written, before it is built: the values they copy
    (MAX_VALUES together with the spec's own), the text they make (MAX_TEXT characters) and the length of a
    chain of references (MAX_REFERENCE_CHAIN), so a few lines of doubling references are refused at once,
    at the reference that crossed the bound."""

    def __init__(self, root: Value, sizes: dict | None = None):
        self.root = root
        self.done: dict[tuple, Value] = {}
        self.active: list[tuple] = []
        self.errors: list[Diagnostic] = []
        self.sizes = sizes if sizes is not None else {}
        self.values = _measure(root, self.sizes)[0]  # values in the document once references are copied
        self.text = 0  # characters written by references inside strings
        self.long_chain = False

    def resolve(self, node: Value, path: tuple) -> Value:
        # iterative over the tree (which may be MAX_DEPTH deep); only references recurse, a bounded chain
        if path in self.done:
            return self.done[path]
        if isinstance(node.value, dict):
            out = replace(node, value={k: self.resolve(v, path + (k,)) for k, v in node.value.items()})
        elif isinstance(node.value, list):
            out = replace(node, value=[self.resolve(v, path + (i,)) for i, v in enumerate(node.value)])
        elif isinstance(node.value, str) and "${" in node.value:
            out = self._string(node, node.value, path)
        else:
            out = node
        self.done[path] = out
        return out

    def _string(self, node: Value, text: str, path: tuple) -> Value:
        """``node``, whose value is the string ``text``, with the references in it resolved."""
        if path in self.active:
            cycle = " -> ".join("${" + _dotted(p) + "}" for p in self.active[self.active.index(path) :])
            raise _Cycle(f"reference cycle: {excerpt(cycle, 400, False)} -> ${{{excerpt(_dotted(path), 100, False)}}}")
        if len(self.active) >= MAX_REFERENCE_CHAIN:
            self.long_chain = True
            raise _Cycle(f"a chain of more than {MAX_REFERENCE_CHAIN} references (a refers to b, which refers to c...)")
        self.active.append(path)
        try:
            whole = REFERENCE.fullmatch(text)
            if whole and whole.group(1) is not None:
                target = self._lookup(whole.group(1), node.loc)
                if target is None:
                    return node
                self.values += _measure(target, self.sizes)[0] - 1
                if self.values > MAX_VALUES:
                    reference = excerpt(whole.group(1), 100, False)
                    raise _TooLarge(
                        f"spec too large: more than {MAX_VALUES} values once ${{{reference}}} "
                        "and the other references are copied"
                    )
                loc = Location(
                    node.loc.file,
                    node.loc.line,
                    node.loc.col,
                    capped_history(
                        (
                            *node.loc.history,
                            f"value of ${{{excerpt(whole.group(1), 100, False)}}} from {target.loc}",
                            *target.loc.history,
                        )
                    ),
                )
                return replace(target, loc=loc, key_loc=node.key_loc)
            pieces: list[str] = []
            notes, failed, written = [], False, 0
            at = 0
            for match in REFERENCE.finditer(text):
                pieces.append(text[at : match.start()])
                at = match.end()
                if match.group(1) is None:
                    pieces.append("${")
                    continue
                target = self._lookup(match.group(1), node.loc)
                if target is None:
                    failed = True
                    continue
                if isinstance(target.value, (dict, list)):
                    failed = True
                    self.errors.append(
                        Diagnostic(
                            f"${{{excerpt(match.group(1), 100, False)}}} is a "
                            f"{'mapping' if isinstance(target.value, dict) else 'list'}; "
                            "only a string that is nothing but the reference can take it",
                            node.loc,
                        )
                    )
                    continue
                piece = _text(target.value)
                written += len(piece)
                if self.text + written > MAX_TEXT:
                    raise _TooLarge(
                        f"spec too large: references write more than {MAX_TEXT} characters of text "
                        f"(at ${{{excerpt(match.group(1), 100, False)}}})"
                    )
                notes.append(f"${{{excerpt(match.group(1), 100, False)}}} from {target.loc}")
                pieces.append(piece)
            if failed:
                return node
            pieces.append(text[at:])
            self.text += written
            return replace(
                node,
                value="".join(pieces),
                loc=Location(node.loc.file, node.loc.line, node.loc.col, capped_history((*node.loc.history, *notes))),
            )
        except _Cycle as cycle:
            if self.active[0] != path:
                raise
            if not (self.long_chain and any("references (a refers" in e.message for e in self.errors)):
                self.errors.append(Diagnostic(str(cycle), node.loc))  # a long chain: reported once
            self.done[path] = node
            return node
        except _TooLarge as error:
            if self.active[0] != path:
                raise
            raise SpecError.at(node.loc, str(error)) from None
        finally:
            self.active.pop()

    def _lookup(self, text: str, site: Location) -> Value | None:
        try:
            path = parse_path(text)
        except _PathError as e:
            self.errors.append(Diagnostic(f"${{{excerpt(text, 100, False)}}}: {e}", site))
            return None
        node = self.root
        walked: tuple = ()
        for key in path:
            node = self.resolve(node, walked) if isinstance(node.value, str) else node
            if isinstance(node.value, dict) and key in node.value:
                node = node.value[key]
            elif isinstance(node.value, list) and isinstance(key, int) and -len(node.value) <= key < len(node.value):
                node = node.value[key]
            else:
                choices = list(node.value) if isinstance(node.value, dict) else []
                self.errors.append(
                    Diagnostic(
                        f"${{{excerpt(text, 100, False)}}} refers to nothing: "
                        f"{excerpt(_dotted(walked + (key,)), 100, False)} is not defined"
                        f"{did_you_mean(str(key), choices)}",
                        site,
                    )
                )
                return None
            walked += (key,)
        return self.resolve(node, walked)


class _TooLarge(Exception):
    pass


class _Cycle(Exception):
    pass


def _dotted(path: tuple) -> str:
    return ".".join(map(str, path))


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def resolve_references(root: Value, sizes: dict | None = None) -> Value:
    refs = _References(root, sizes)
    out = refs.resolve(root, ())
    if refs.errors:
        raise SpecError(refs.errors)
    return out


# --- the whole composition ---------------------------------------------------------------------------------------


def compose(path, overrides=(), roots=None, values=()) -> Document:
    """The resolved spec at ``path``: extends and includes merged, ``--set`` applied, references resolved.

    Files are read only inside ``roots`` (default: the working directory and the spec's folder, see
    ``default_roots``); each error whose place is in another file names ``path`` and the chain of extends
    and includes that reached it. ``values`` are ``(path, value, Location)`` triples set after the overrides,
    each located where it is written (a sweep trial's parameters, at their place in the sweep file)."""
    name = os.fsdecode(path)
    composer = _Composer(default_roots(name) if roots is None else roots)
    return _finish(composer, lambda: composer.file(name), name, overrides, values)


def compose_mapping(values: dict, overrides=(), roots=None, name: str = MAPPING) -> Document:
    """``compose`` for a spec given as a mapping of plain values (what ``yaml.safe_load`` returns): it is
    checked and loaded exactly as a file's text would be, and its relative paths resolve against the working
    directory (the root by default). Locations name ``name`` and the line of the value in the mapping's YAML
    form."""
    if not isinstance(values, dict):
        raise SpecError.at(Location(name, 1, 1), f"a spec is a mapping of settings, got {type(values).__name__}")
    try:
        text = yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as e:
        raise SpecError.at(Location(name, 1, 1), f"a spec mapping holds only plain values: {e}") from None
    except RecursionError:  # nested (or containing itself) far deeper than any spec's limit
        raise SpecError.at(Location(name, 1, 1), "a spec mapping nested too deeply") from None
    composer = _Composer(default_roots(os.path.join(os.getcwd(), name)) if roots is None else roots)
    return _finish(
        composer, lambda: composer.document(load_string(text, name), name, (os.path.realpath(name),)), name, overrides
    )


def _finish(composer: _Composer, read: Callable[[], Value | None], name: str, overrides, values=()) -> Document:
    """``read()``'s tree with --set and ``values`` applied, references resolved and data paths made relative
    to ``name``."""
    try:
        root = read()
        if composer.errors:
            raise SpecError(composer.errors)
        assert root is not None, "read() is None only once it has recorded an error"
        root = apply_overrides(root, overrides)
        for key, value, loc in values:
            try:
                root = set_value(root, tuple(key), None if value is None else _located(value, loc))
            except _PathError as e:
                raise SpecError.at(loc, f"cannot set '{_dotted(key)}': {e}") from None
        root = composer._limit(root, root.loc)
        root = resolve_references(root, composer.sizes)
        root = relocate_data_paths(root, name)
    except SpecError as e:
        raise SpecError(attribute(e.diagnostics, name, composer.origins)) from None
    doc = document(root, name)
    doc.roots, doc.origins = composer.roots, composer.origins
    return doc

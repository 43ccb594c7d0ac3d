"""Load a YAML spec into plain Python values while remembering where each came from.

Later stages (schema checks, graph building, the optimiser factory) need to say
*where* a bad value is, so this loader returns a :class:`Document` holding the
data plus a location for every value and every mapping key.

Safety: the text is parsed and composed exactly like ``yaml.safe_load`` does
(``SafeLoader``'s ``Composer`` and ``Resolver``; the libyaml parser when PyYAML
was built with it, for speed), but values are built here from the node tree,
never by a PyYAML constructor for anything but plain scalars.  Only these tags
are accepted: str, int, float, bool, null, timestamp, seq and map (plus the
``<<`` merge key).  Every tag ``safe_load`` refuses (``!!python/...``, local
``!foo`` tags, ``=``) is refused here too, and so are ``!!binary``, ``!!set``,
``!!omap`` and ``!!pairs``, which ``safe_load`` would turn into types a spec
has no use for.

Deliberate differences from ``safe_load``:

* Timestamps (``2024-01-01``) stay strings, exactly as written, so the data
  holds only str/int/float/bool/None/list/dict.
* Duplicate keys are an error (``safe_load`` silently keeps the last one).
* Keys must be strings: ``1: x`` or ``on: push`` (a YAML 1.1 boolean!) is an
  error instead of an int or bool key.
* Each alias expansion is an independent copy, so mutating the data at one
  path never changes another.
* Size limits: at most 10 MiB of text, 100 000 values and keys as written,
  100 000 values with every alias expanded (this refuses "billion laughs"
  alias bombs quickly) and 100 levels of nesting (no RecursionError).

Every failure is a :class:`~specgrad.base.diagnostics.SpecError` with a location.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from specgrad.base.diagnostics import Location, SpecError, excerpt
from specgrad.base.fileio import not_regular

__all__ = ["Document", "load_string", "load_file", "MAX_BYTES", "MAX_VALUES", "MAX_DEPTH"]

MAX_BYTES = 10 * 1024 * 1024
"""Largest spec accepted, in bytes (files) or characters (strings)."""
MAX_VALUES = 100_000
"""Most values (scalars, lists and mappings, counting every alias expansion) one spec may build."""
MAX_DEPTH = 100
"""Deepest nesting accepted; the top-level mapping is level 1."""


@dataclass
class Document:
    """A loaded spec: plain data plus where every value and key is in the file."""

    data: dict[str, Any]  # the top level is always a mapping (load_string refuses anything else)
    file: str
    locations: dict[tuple, Location] = field(default_factory=dict)
    key_locations: dict[tuple, Location] = field(default_factory=dict)
    # set by composition: the folders files may be read from, and how each other file was reached
    roots: tuple[str, ...] = ()
    origins: dict[str, tuple[str, Location]] = field(default_factory=dict)

    def loc(self, path: tuple | list = ()) -> Location:
        """Location of the value at ``path``, or of its nearest located ancestor.

        Falling back to an ancestor lets callers report on paths that do not
        exist (a missing required key is reported at the mapping that lacks it).
        """
        path = tuple(path)
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        return self.locations.get((), Location(self.file, 1, 1))

    def key_loc(self, path: tuple | list) -> Location:
        """Location of the mapping key that names ``path``; ``loc(path)`` if it has none."""
        path = tuple(path)
        found = self.key_locations.get(path)
        return found if found is not None else self.loc(path)


# --- public entry points ----------------------------------------------------


def load_file(path: str | os.PathLike) -> Document:
    """Read ``path`` as UTF-8 and load it; every failure is a located SpecError."""
    name = os.fsdecode(path)
    raw = read_regular_file(name, MAX_BYTES, "spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError.at(
            _byte_location(raw, e.start, name), f"file is not valid UTF-8 (byte 0x{raw[e.start]:02x})"
        ) from None
    return load_string(text, name)


def read_regular_file(name: str, limit: int, kind: str = "spec") -> bytes:
    """The bytes of ``name``, refused unless it is a regular file of at most ``limit`` bytes.

    A FIFO, a device such as /dev/zero, a socket or a directory is refused by ``stat`` before it is
    opened, so nothing blocks or reads forever; the file is then opened non-blocking and checked again
    with ``fstat``, so one swapped in between cannot block either.
    """
    start = Location(name, 1, 1)
    try:
        what = not_regular(os.stat(name).st_mode)
        if what is not None:
            raise SpecError.at(start, f"is {what}, not a {kind} file")
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SpecError.at(start, "no such file") from None
    except PermissionError:
        raise SpecError.at(start, "permission denied") from None
    except OSError as e:
        raise SpecError.at(start, f"cannot read file: {e.strerror or type(e).__name__}") from None
    try:
        info = os.fstat(fd)
        what = not_regular(info.st_mode)
        if what is not None:
            raise SpecError.at(start, f"is {what}, not a {kind} file")
        if info.st_size > limit:
            raise SpecError.at(start, f"{kind} too large: more than {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(limit + 1)  # never read more than the limit
    except OSError as e:
        raise SpecError.at(start, f"cannot read file: {e.strerror or type(e).__name__}") from None
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise SpecError.at(start, f"{kind} too large: more than {limit} bytes")
    return raw


def load_string(text: str, file: str = "<string>") -> Document:
    """Load one YAML document whose top level is a mapping with string keys."""
    if len(text) > MAX_BYTES:
        raise SpecError.at(Location(file, 1, 1), f"spec too large: more than {MAX_BYTES} characters")
    _check_printable(text, file)
    root = _compose(text, file)
    if root is None:
        raise SpecError.at(Location(file, 1, 1), "a spec must be a mapping of keys; the document is empty")
    if not isinstance(root, MappingNode):
        raise SpecError.at(_loc(file, root.start_mark), f"a spec must be a mapping of keys; got {_describe(root)}")
    builder = _Builder(file)
    data = builder.build(root)
    return Document(data, file, builder.locations, builder.key_locations)


# --- composing: text -> node tree -------------------------------------------


class _Alias:
    """Stands in for an alias (``*name``) in the node tree.

    The stock composer returns the anchored node itself, losing where the
    alias was written; keeping that mark lets an error about an aliased value
    point at the ``*name`` that put it there.
    """

    __slots__ = ("target", "start_mark")

    def __init__(self, target: Node, start_mark) -> None:
        self.target = target
        self.start_mark = start_mark


class _LocatingComposer(Composer):
    """SafeLoader's composer plus a nesting limit and alias marks.

    The composer recurses once per nesting level, so without a limit a deeply
    nested flow collection (``[[[[...``) would hit Python's recursion limit.
    """

    file: str = "<string>"
    _depth: int = 0
    _nodes: int = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return _Alias(super().compose_node(parent, index), event.start_mark)
        # Counted as they are composed, so a 10 MiB list of numbers stops at the limit, not after millions
        # of nodes; aliases are measured later (_Builder.build), from the anchored node's size.
        self._nodes += 1
        if self._nodes > MAX_VALUES:
            raise SpecError.at(
                _loc(self.file, event.start_mark), f"spec too large: more than {MAX_VALUES} values and keys"
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise SpecError.at(_loc(self.file, event.start_mark), f"nesting deeper than {MAX_DEPTH} levels")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        # Checked here, where every node passes exactly once, so a refused tag
        # is an error even inside a value that a merge key later overrides.
        if node.tag not in _ALLOWED_TAGS[type(node)]:
            raise SpecError.at(
                _loc(self.file, node.start_mark),
                f"tag {excerpt(_short(node.tag))} is not allowed in a spec "
                "(only strings, numbers, booleans, null, lists and mappings)",
            )
        return node


def _make_loader_class() -> type:
    """Pick libyaml's event parser when available (about 8x faster), else pure Python.

    Both feed the same pure-Python ``Composer`` and ``Resolver`` that
    ``SafeLoader`` uses, so tags, typing and limits are the same either way.
    Like ``yaml.CSafeLoader``, libyaml's scanner words syntax errors
    differently and tolerates a few malformed inputs PyYAML refuses.
    """
    try:
        from yaml._yaml import CParser
    except ImportError:
        from yaml.parser import Parser
        from yaml.reader import Reader
        from yaml.scanner import Scanner

        class _PyLoader(Reader, Scanner, Parser, _LocatingComposer, Resolver):
            def __init__(self, stream: str) -> None:
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                Parser.__init__(self)
                _LocatingComposer.__init__(self)
                Resolver.__init__(self)

        return _PyLoader

    class _CLoader(CParser, _LocatingComposer, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _LocatingComposer.__init__(self)
            Resolver.__init__(self)

    return _CLoader


_Loader = _make_loader_class()


def _compose(text: str, file: str) -> Node | None:
    """Compose the single document in ``text``; None when the stream is empty."""
    try:
        loader = _Loader(text)
    except yaml.YAMLError as e:
        raise _yaml_error(e, text, file) from None
    loader.file = file
    try:
        loader.get_event()  # StreamStartEvent
        root = None
        if not loader.check_event(yaml.StreamEndEvent):
            root = loader.compose_document()
        if not loader.check_event(yaml.StreamEndEvent):
            raise SpecError.at(
                _loc(file, loader.peek_event().start_mark),
                "a spec file must hold exactly one YAML document; found another",
            )
        return root
    except yaml.YAMLError as e:
        raise _yaml_error(e, text, file) from None
    finally:
        loader.dispose()


def _check_printable(text: str, file: str) -> None:
    """Refuse characters YAML forbids before the parser sees them.

    Done here so the message and location are the same for both parsers, and
    because libyaml cannot even encode lone surrogates.
    """
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad is not None:
        char = bad.group()
        raise SpecError.at(
            _offset_location(text, bad.start(), file), f"character U+{ord(char):04X} is not allowed in YAML"
        )


def _yaml_error(e: yaml.YAMLError, text: str, file: str) -> SpecError:
    """Turn a PyYAML error into a SpecError at the place it points to."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = _loc(file, mark) if mark is not None else Location(file, 1, 1)
        parts = []
        if e.context:
            # e.g. "while scanning a simple key at f:3:1: could not find expected ':'"
            context_at = _loc(file, e.context_mark) if e.context_mark is not None else None
            if context_at in (None, where):
                parts.append(e.context)
            else:
                parts.append(f"{e.context} at {context_at}")
        if e.problem:
            parts.append(e.problem)
        return SpecError.at(where, "invalid YAML: " + (": ".join(parts) or "malformed input"))
    if isinstance(e, yaml.reader.ReaderError):
        # Only reachable if libyaml rejects a character PyYAML's regex allows;
        # libyaml reports a byte offset into the UTF-8 encoding.
        offset = len(text.encode("utf-8")[: e.position].decode("utf-8", "ignore"))
        return SpecError.at(_offset_location(text, offset, file), f"invalid YAML: {e.reason}")
    return SpecError.at(Location(file, 1, 1), f"invalid YAML: {e}")


# --- building: node tree -> plain values ------------------------------------

_TAG = "tag:yaml.org,2002:"
_STR, _MERGE, _VALUE = _TAG + "str", _TAG + "merge", _TAG + "value"
_SEQ, _MAP = _TAG + "seq", _TAG + "map"

_SAFE = SafeConstructor()


def _timestamp(node: ScalarNode) -> str:
    """Validate like SafeConstructor but keep the text: the data holds no datetimes."""
    if SafeConstructor.timestamp_regexp.match(node.value) is None:
        raise ValueError(node.value)
    return node.value


_SCALARS: dict[str, Callable[[ScalarNode], object]] = {
    _STR: _SAFE.construct_yaml_str,
    _TAG + "int": _SAFE.construct_yaml_int,
    _TAG + "float": _SAFE.construct_yaml_float,
    _TAG + "bool": _SAFE.construct_yaml_bool,
    _TAG + "null": _SAFE.construct_yaml_null,
    _TAG + "timestamp": _timestamp,
}

# '<<' and '=' resolve to the merge and value tags; both are fine as keys.
_ALLOWED_TAGS: dict[type, frozenset[str]] = {
    ScalarNode: frozenset(_SCALARS) | {_MERGE, _VALUE},
    SequenceNode: frozenset({_SEQ}),
    MappingNode: frozenset({_MAP}),
}

_KINDS = {
    _TAG + "int": "an integer",
    _TAG + "float": "a float",
    _TAG + "bool": "a boolean",
    _TAG + "null": "null",
    _TAG + "timestamp": "a timestamp",
}


_Entry = tuple  # (key, key location, value node or _Alias) of one mapping entry


class _Builder:
    """Builds plain values from nodes, recording locations and enforcing limits."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.locations: dict[tuple, Location] = {}
        self.key_locations: dict[tuple, Location] = {}
        self._count = 0  # values built plus merge entries processed
        self._active: set[int] = set()  # ids of collections being built: finds cycles
        self._alias: Location | None = None  # outermost alias being expanded
        self._sizes: dict[int, int] = {}  # id of node -> size with aliases expanded

    def build(self, root: MappingNode) -> dict[str, Any]:
        # Refuse a bomb before building any of it: its size is known from memoized sizes of its parts.
        if self._expanded_size(root) > MAX_VALUES:
            raise SpecError.at(self._crossing(root, 0, None), _TOO_LARGE)
        data = self._value(root, (), 1)
        assert isinstance(data, dict), "a mapping node builds a dict"
        return data

    def _crossing(self, node: Node, count: int, alias: Location | None) -> Location:
        """Where building in document order would pass the limit: the outermost alias being expanded."""
        count += 1
        for child in _children(node):
            target = _deref(child)
            size = self._expanded_size(target)
            if count + size > MAX_VALUES:
                if alias is None and isinstance(child, _Alias):
                    alias = _loc(self.file, child.start_mark)
                return self._crossing(target, count, alias)
            count += size
        return alias or _loc(self.file, node.start_mark)

    def _value(self, node: Node | _Alias, path: tuple, depth: int) -> object:
        where = _loc(self.file, node.start_mark)
        self.locations[path] = where
        if isinstance(node, _Alias):
            outermost = self._alias is None
            if outermost:
                self._alias = where
            try:
                return self._node(node.target, path, depth, where)
            finally:
                if outermost:
                    self._alias = None
        return self._node(node, path, depth, where)

    def _node(self, node: Node, path: tuple, depth: int, where: Location) -> object:
        if depth > MAX_DEPTH:
            raise SpecError.at(where, f"nesting deeper than {MAX_DEPTH} levels")
        self._tick(where)
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self._active:
            raise SpecError.at(where, "an alias refers to a value that contains it (a cycle)")
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self._value(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
            return self._mapping(node, path, depth)
        finally:
            self._active.discard(id(node))

    def _expanded_size(self, node: Node) -> int:
        """Values ``node`` holds with every alias in it expanded (merge keys counted as written), from
        memoized sizes of the anchored nodes, so measuring a bomb costs no more than its text."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        self._sizes[id(node)] = 0  # an alias cycle counts nothing; building reports it
        size = 1 + sum(self._expanded_size(_deref(c)) for c in _children(node))
        self._sizes[id(node)] = size
        return size

    def _tick(self, where: Location, n: int = 1) -> None:
        self._count += n
        if self._count > MAX_VALUES:
            raise SpecError.at(self._alias or where, _TOO_LARGE)

    def _scalar(self, node: ScalarNode) -> object:
        construct = _SCALARS.get(node.tag)
        if construct is None:  # a bare '<<' or '=' used as a value, as safe_load refuses too
            raise SpecError.at(
                _loc(self.file, node.start_mark),
                f"{excerpt(node.value)} is only allowed as a key; put it in quotes to use it as a string",
            )
        try:
            return construct(node)
        except Exception:  # SafeConstructor raises ValueError/KeyError/IndexError on bad text
            raise SpecError.at(
                _loc(self.file, node.start_mark), f"invalid {_short(node.tag)} value {excerpt(node.value)}"
            ) from None

    def _mapping(self, node: MappingNode, path: tuple, depth: int) -> dict:
        # Later entries override earlier ones (merged entries come first), but
        # a key keeps the position where it first appeared -- as in safe_load.
        winners: dict[str, tuple[Location, Node | _Alias]] = {}
        for key, key_where, value in self._entries(node):
            winners[key] = (key_where, value)
        result = {}
        for key, (key_where, value) in winners.items():
            self.key_locations[path + (key,)] = key_where
            result[key] = self._value(value, path + (key,), depth + 1)
        return result

    def _entries(self, node: MappingNode) -> list[_Entry]:
        """(key, key location, value node) for a mapping, merge keys expanded.

        Follows SafeConstructor.flatten_mapping: merged entries first, then the
        mapping's own; for ``<<: [*a, *b]`` the entries of *a* win over *b*'s.
        """
        merged: list[_Entry] = []
        own: list[_Entry] = []
        seen: dict[str, Location] = {}
        for key_node, value_node in node.value:
            key_target = _deref(key_node)
            key_where = _loc(self.file, key_node.start_mark)
            if isinstance(key_target, ScalarNode) and key_target.tag == _MERGE:
                merged.extend(self._merge(value_node))
                continue
            key = self._key(key_target, key_where)
            if key in seen:
                raise SpecError.at(key_where, f"duplicate key {excerpt(key)}; first defined at {seen[key]}")
            seen[key] = key_where
            own.append((key, key_where, value_node))
        return merged + own

    def _merge(self, value_node: Node | _Alias) -> list[_Entry]:
        """Entries contributed by one ``<<:`` value (a mapping or a list of mappings)."""
        where = _loc(self.file, value_node.start_mark)
        target = _deref(value_node)
        if isinstance(target, SequenceNode):
            sources = [(_deref(item), _loc(self.file, item.start_mark)) for item in target.value]
        else:
            sources = [(target, where)]
        parts = []
        for source, source_where in sources:
            if not isinstance(source, MappingNode):
                raise SpecError.at(
                    source_where, f"the merge key '<<' needs a mapping or a list of mappings, got {_describe(source)}"
                )
            if id(source) in self._active:
                raise SpecError.at(source_where, "an alias refers to a value that contains it (a cycle)")
            self._active.add(id(source))
            try:
                entries = self._entries(source)
            finally:
                self._active.discard(id(source))
            # Merge entries cost work even when they are overridden; count them
            # so nested merges of merges cannot explode either.
            self._tick(where, len(entries))
            parts.append(entries)
        return [entry for part in reversed(parts) for entry in part]

    def _key(self, node: Node, where: Location) -> str:
        if isinstance(node, ScalarNode):
            if node.tag in (_STR, _VALUE):  # safe_load also turns a '=' key into a string
                return node.value
            raise SpecError.at(
                where,
                f"keys must be strings; got {_KINDS[node.tag]} "
                f"{excerpt(node.value)} (put it in quotes to use it as a string)",
            )
        raise SpecError.at(where, f"keys must be strings; got {_describe(node)}")


# --- small helpers ----------------------------------------------------------

_TOO_LARGE = f"spec too large: more than {MAX_VALUES} values (alias expansion?)"


def _children(node: Node) -> list:
    """The value nodes (or aliases) directly inside a collection node."""
    if isinstance(node, MappingNode):
        return [value for _, value in node.value]
    return node.value if isinstance(node, SequenceNode) else []


def _deref(node: Node | _Alias) -> Node:
    return node.target if isinstance(node, _Alias) else node


def _loc(file: str, mark) -> Location:
    """PyYAML marks are 0-based; ours are 1-based."""
    return Location(file, mark.line + 1, mark.column + 1)


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _describe(node: Node | _Alias) -> str:
    node = _deref(node)
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _TAG + "null":
        return "null"
    return f"the scalar {excerpt(node.value)}"


_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _offset_location(text: str, offset: int, file: str) -> Location:
    """1-based line/col of a character offset, counting line breaks as YAML does."""
    line, line_start = 1, 0
    for m in _LINE_BREAK.finditer(text, 0, offset):
        line, line_start = line + 1, m.end()
    return Location(file, line, offset - line_start + 1)


def _byte_location(raw: bytes, offset: int, file: str) -> Location:
    """Location of a byte offset in undecodable input; the column counts characters."""
    line_start = raw.rfind(b"\n", 0, offset) + 1
    col = len(raw[line_start:offset].decode("utf-8", "replace")) + 1
    return Location(file, raw.count(b"\n", 0, offset) + 1, col)

"""Located diagnostics for spec problems.

Every problem a user can cause in a spec is reported as a :class:`Diagnostic`
that points at ``file:line:col``, so an editor, a terminal and a CI annotation
can all jump to the offending text.  :class:`SpecError` carries one or more of
them; :func:`format_diagnostics` renders them for humans (``text``), tools
(``json``) and GitHub Actions (``github``).

This module is imported by nearly everything in :mod:`specgrad.spec`, so it
keeps its imports to the standard library and loads the heavier ones lazily.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Location",
    "Diagnostic",
    "SpecError",
    "format_diagnostics",
    "closest",
    "did_you_mean",
    "excerpt",
    "FORMATS",
    "SEVERITIES",
]

SEVERITIES = ("error", "warning")
FORMATS = ("text", "json", "github")
EXCERPT = 40
"""Most characters of a value that a message quotes: enough to recognise it, never a file's contents."""
MAX_MESSAGE = 2000
"""Longest message printed; a last guard, since every message that quotes a value uses ``excerpt``."""
MAX_HISTORY = 12
"""Most provenance notes one value keeps; a chain of references or extends cannot grow it without bound."""


def excerpt(value, limit: int = EXCERPT, quote: bool = True) -> str:
    """``repr`` of a value (``str`` unless ``quote``) cut to ``limit`` characters: messages quote values,
    never whole files."""
    text = value if isinstance(value, str) else str(value)
    quote = quote and isinstance(value, str)
    if len(text) <= limit:
        return repr(text) if quote else text
    cut = text[:limit]
    return (repr(cut) if quote else cut) + f"... ({len(text)} characters)"


def capped_history(notes: tuple) -> tuple:
    """``notes`` with at most MAX_HISTORY entries: the first ones (closest to the value) and a count."""
    if len(notes) <= MAX_HISTORY:
        return notes
    return (*notes[: MAX_HISTORY - 1], f"and {len(notes) - MAX_HISTORY + 1} earlier places")


def printable(name: str) -> str:
    """A file name as a message shows it: control characters escaped (a name holding a newline then
    ``::error ...`` would otherwise start a line GitHub Actions reads as a command)."""
    return name if name.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


@dataclass(frozen=True)
class Location:
    """A point in a spec file; ``line`` and ``col`` are 1-based like editors show them.

    ``history`` is the value's provenance before it landed here, e.g.
    ``("overrides base.yaml:12:5",)``: composition (extends, include, ``--set``,
    ``${...}``) records it, and every message about the value repeats it.
    """

    file: str
    line: int
    col: int
    history: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{printable(self.file)}:{self.line}:{self.col}"

    def point(self) -> str:
        """``file:line:col`` with the provenance, as a message names another place."""
        return f"{self}" + (f" ({', '.join(self.history)})" if self.history else "")

    def noted(self, note: str) -> Location:
        """This place with one more line of provenance."""
        return Location(self.file, self.line, self.col, capped_history((*self.history, note)))


@dataclass(frozen=True)
class Diagnostic:
    """One problem (or warning) with the place in the spec that caused it."""

    message: str
    location: Location | None = None
    severity: str = "error"
    spec: str | None = None
    """The spec being checked, when the problem's place is in another file (a base, a fragment, --set)."""
    chain: tuple[tuple[str, Location], ...] = ()
    """How that other file was reached: ("extended by" | "included by", place of the extends/include),
    innermost first; the last place is in ``spec``."""

    def __post_init__(self) -> None:
        # Catch typos such as "Error" early: the github format turns the
        # severity into a workflow command name, which must be exact.
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def text(self) -> str:
        """The message with the value's provenance and the chain that reached its file, if any."""
        notes = [
            *(self.location.history if self.location is not None else ()),
            *(f"{how} {where}" for how, where in self.chain),
        ]
        text = f"{self.message} ({', '.join(notes)})" if notes else self.message
        return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "... (message cut)"

    @property
    def anchor(self) -> Location | None:
        """Where a tool should annotate: a place in the spec being checked (the outermost extends or include
        line that reached the problem's file), else the problem's own place."""
        return self.chain[-1][1] if self.chain else self.location

    def __str__(self) -> str:
        prefix = f"{printable(self.spec)}: " if self.spec else ""
        if self.location is None:
            return f"{prefix}{self.severity}: {self.text}"
        return f"{prefix}{self.location}: {self.severity}: {self.text}"


def _sort_key(diag: Diagnostic) -> tuple:
    # Diagnostics without a location concern the spec as a whole; list them first.
    loc = diag.location
    if loc is None:
        return (0, "", 0, 0)
    return (1, loc.file, loc.line, loc.col)


class SpecError(Exception):
    """One or more located problems in a spec.  ``str()`` is the text format.

    ``diagnostics`` is sorted by (file, line, col) so the output reads in the
    order of the file no matter in which order checks ran.
    """

    diagnostics: list[Diagnostic]

    def __init__(self, diagnostics: Diagnostic | Iterable[Diagnostic]) -> None:
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        diags = sorted(diagnostics, key=_sort_key)  # sorted() is stable
        if not diags:
            raise ValueError("SpecError needs at least one diagnostic")
        self.diagnostics = diags
        # Passing the list as the only arg keeps the exception picklable
        # (e.g. across multiprocessing), since pickle calls cls(*args).
        super().__init__(diags)

    @classmethod
    def at(cls, location: Location | None, message: str) -> SpecError:
        """Shorthand for an error with a single diagnostic."""
        return cls(Diagnostic(message, location))

    def __str__(self) -> str:
        return format_diagnostics(self.diagnostics, "text")


def _github_data(value: str) -> str:
    """Escape a workflow-command message (GitHub's ``escapeData``)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_property(value: str) -> str:
    """Escape a workflow-command property value (GitHub's ``escapeProperty``)."""
    return _github_data(value).replace(":", "%3A").replace(",", "%2C")


def _format_one(diag: Diagnostic, fmt: str) -> str:
    loc = diag.location
    if fmt == "text":
        return str(diag)
    if fmt == "json":
        import json  # lazily: only machine output needs it

        record: dict[str, object] = {
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
            "severity": diag.severity,
            "message": diag.text,
        }
        if diag.spec:
            record["spec"] = diag.spec
            record["chain"] = [{"how": how, "file": w.file, "line": w.line, "col": w.col} for how, w in diag.chain]
        return json.dumps(record, ensure_ascii=False)
    # github: the annotation lands in the spec being checked; the other place is named in the message
    anchor = diag.anchor
    message = diag.text if anchor == loc or loc is None else f"{loc}: {diag.text}"
    if anchor is None:
        return f"::{diag.severity}::{_github_data(message)}"
    return (
        f"::{diag.severity} file={_github_property(anchor.file)},"
        f"line={anchor.line},col={anchor.col}::{_github_data(message)}"
    )


def format_diagnostics(diags: Iterable[Diagnostic], fmt: str) -> str:
    """Render diagnostics, one per line, without a trailing newline.

    ``text``:   ``file:line:col: error: message``
    ``json``:   one JSON object per line with keys file, line, col, severity,
                message (file/line/col are null without a location)
    ``github``: ``::error file=F,line=L,col=C::message`` workflow commands, so
                problems show up as annotations on the pull request.
    """
    if fmt not in FORMATS:
        raise ValueError(
            f"unknown diagnostics format {fmt!r}; expected one of {', '.join(FORMATS)}{did_you_mean(fmt, FORMATS)}"
        )
    return "\n".join(_format_one(d, fmt) for d in diags)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice the user most likely meant by ``word``, if any is close enough."""
    import difflib  # lazily: only needed once something is already wrong

    choices = [str(c) for c in choices]
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    # a known word with something tacked on ("lr_rate" for "lr", "batch" for "batch_size")
    affixed = [c for c in choices if min(len(c), len(word)) >= 2 and (word.startswith(c) or c.startswith(word))]
    return min(affixed, key=lambda c: abs(len(c) - len(word)), default=None)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'lr'?"`` for the closest choice, or ``""``.

    Meant to be appended to any message that names an unknown word, so every
    such message suggests a fix in the same way.
    """
    match = closest(word, choices)
    return f"; did you mean {match!r}?" if match else ""

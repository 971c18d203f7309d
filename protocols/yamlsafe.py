"""A small, safe YAML reader for protocol files that remembers where everything was.

It builds plain Python data straight from the parser's event stream, so no YAML
constructor ever runs: tags (``!!python/object`` and every other explicit tag) are
refused, keys must be plain scalars and unique, anchors and aliases are allowed but
their expanded size is bounded (an "alias bomb" stops after a fixed node budget),
nesting depth is bounded, and non-finite numbers (``.nan``, ``.inf``) are refused with
their line. Every mapping key and sequence item records its 1-based line under its
path, so validation errors can be mapped back to the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "YamlDocument",
    "YamlProblem",
    "read_yaml",
    "scalar_from_text",
]

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 50
MAX_NODES = 1_000_000  # scalars + containers after alias expansion

Path = tuple[str | int, ...]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_resolver = yaml.resolver.Resolver()
_constructor = yaml.constructor.SafeConstructor()


class YamlProblem(Exception):
    """The text is not acceptable YAML for a protocol; ``line`` is 1-based or None."""

    def __init__(self, message: str, line: int | None, path: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.path = path


@dataclass
class YamlDocument:
    """The data and the line of every mapping key and sequence item, by path."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """The line of ``path`` or of its nearest located ancestor."""
        for n in range(len(path), -1, -1):
            line = self.lines.get(path[:n])
            if line is not None:
                return line
        return None


def _scalar(event: Any) -> Any:
    tag: str = _resolver.resolve(  # type: ignore[no-untyped-call]
        yaml.ScalarNode, event.value, event.implicit
    )
    node = yaml.ScalarNode(tag, event.value)
    if tag.endswith((":int", ":bool", ":null")):
        return _constructor.construct_object(node)
    if tag.endswith(":float"):
        value = _constructor.construct_object(node)
        if not math.isfinite(value):
            raise YamlProblem(f"{event.value!r} is not a finite number", event.start_mark.line + 1)
        return value
    # str, and timestamps (kept as written: dates are labels here)
    return event.value


class _Frame:
    __slots__ = ("container", "key", "key_line", "path")

    def __init__(self, container: Any, path: Path) -> None:
        self.container = container
        self.path = path
        self.key: str | None = None  # pending mapping key
        self.key_line = 0


_BUILD_EVENTS = (
    yaml.ScalarEvent,
    yaml.SequenceStartEvent,
    yaml.MappingStartEvent,
    yaml.AliasEvent,
    yaml.SequenceEndEvent,
    yaml.MappingEndEvent,
)


class _Builder:
    """Builds the document from parser events, checking each as it comes."""

    def __init__(self) -> None:
        self.doc = YamlDocument(data=None)
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.anchor_starts: list[tuple[str, int, _Frame | None]] = []
        self.nodes = 0
        self.documents = 0
        self.root_set = False

    def feed(self, event: Any, line: int | None) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise YamlProblem("only one YAML document per file", line)
            return
        if not isinstance(event, _BUILD_EVENTS):
            return
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise YamlProblem(f"YAML tags such as {tag!r} are not allowed", line)
        top = self.stack[-1] if self.stack else None
        if isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            self._end()
        elif top is not None and isinstance(top.container, dict) and top.key is None:
            self._key(top, event, line)
        else:
            self.nodes += 1
            if isinstance(event, yaml.AliasEvent):
                self._alias(event, line)
                return
            if self.nodes > MAX_NODES:
                raise YamlProblem(f"more than {MAX_NODES:,} YAML nodes", line)
            if isinstance(event, yaml.ScalarEvent):
                self._scalar(event, line)
            else:
                self._start(event, top, line)

    def _place(self, value: Any, line: int) -> None:
        if not self.stack:
            self.doc.data = value
            self.root_set = True
            return
        top = self.stack[-1]
        if isinstance(top.container, list):
            self.doc.lines[(*top.path, len(top.container))] = line
            top.container.append(value)
            return
        # A mapping value: its key was read (and located) just before.
        top.container[top.key] = value
        top.key = None

    def _end(self) -> None:
        frame = self.stack.pop()
        if self.anchor_starts and self.anchor_starts[-1][2] is frame:
            name, start, _ = self.anchor_starts.pop()
            self.anchors[name] = (frame.container, self.nodes - start)

    def _key(self, top: _Frame, event: Any, line: int | None) -> None:
        if not isinstance(event, yaml.ScalarEvent):
            raise YamlProblem("a mapping key must be a plain name", line)
        key = event.value
        if key == "<<":
            raise YamlProblem("merge keys (<<) are not supported", line)
        if key in top.container:
            raise YamlProblem(f"duplicate key {key!r}", line)
        top.key = key
        top.key_line = line or 0
        self.doc.lines[(*top.path, key)] = line or 0
        self.nodes += 1

    def _alias(self, event: Any, line: int | None) -> None:
        if event.anchor not in self.anchors:
            raise YamlProblem(f"unknown or recursive alias *{event.anchor}", line)
        value, size = self.anchors[event.anchor]
        self.nodes += size
        if self.nodes > MAX_NODES:
            raise YamlProblem(f"aliases expand to more than {MAX_NODES:,} nodes", line)
        self._place(value, line or 0)

    def _scalar(self, event: Any, line: int | None) -> None:
        try:
            value = _scalar(event)
        except YamlProblem as exc:
            if self.stack:  # say which field holds the bad value
                top = self.stack[-1]
                where = top.key if isinstance(top.container, dict) else len(top.container)
                exc.path = (*top.path, where)
            raise
        self._place(value, line or 0)
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1)

    def _start(self, event: Any, top: _Frame | None, line: int | None) -> None:
        """A mapping or a sequence starts."""
        if len(self.stack) >= MAX_DEPTH:
            raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", line)
        container: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
        if top is None:
            path: Path = ()
        elif isinstance(top.container, list):
            path = (*top.path, len(top.container))
        else:
            assert top.key is not None
            path = (*top.path, top.key)
        self._place(container, line or 0)
        frame = _Frame(container, path)
        self.stack.append(frame)
        if event.anchor is not None:
            # Recorded at the end, so an alias inside its own anchor is "unknown".
            self.anchor_starts.append((event.anchor, self.nodes, frame))


def read_yaml(text: str) -> YamlDocument:
    """Parse one YAML document safely. Raises :class:`YamlProblem` with the line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlProblem(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB", None)
    builder = _Builder()
    try:
        for event in yaml.parse(text, Loader=_Loader):
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            builder.feed(event, line)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        raise YamlProblem(f"YAML syntax: {problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"YAML: {exc}", None) from None
    if not builder.root_set or builder.doc.data is None:
        raise YamlProblem("the file is empty; a protocol is a mapping (name:, sequence:, ...)", 1)
    return builder.doc


def scalar_from_text(text: str) -> Any:
    """Read one plain scalar as YAML would (``9.1`` -> 9.1, ``true`` -> True, else text)."""
    event = yaml.ScalarEvent(None, None, (True, False), text)
    try:
        return _scalar(event)
    except YamlProblem:
        raise
    except (yaml.YAMLError, ValueError):
        return text

"""SCPI command-line parsing for the simulated 2450 (IEEE 488.2 / SCPI-99 rules).

A program line holds commands separated by ``;`` (not inside quotes). A header starting
with ``:`` is absolute; one without is relative to the previous command's path (its
nodes minus the last); ``*`` common commands leave the path alone. Nodes match their long
form or their short form (the upper-case letters), case-insensitively, optionally with a
numeric suffix ``1``; nodes in ``[...]`` may be left out.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Command",
    "Pattern",
    "ScpiError",
    "match",
    "parse_units",
    "split_line",
    "split_params",
]


class ScpiError(Exception):
    """An SCPI error for the error queue: negative code and the standard text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f'{code},"{text}"')
        self.code, self.text = code, text


@dataclass(frozen=True, slots=True)
class Pattern:
    """A header such as ``SOURce:CURRent[:LEVel]`` (``[..]`` marks optional nodes)."""

    nodes: tuple[tuple[str, bool], ...]  # (long form, optional)

    @classmethod
    def parse(cls, text: str) -> Pattern:
        nodes: list[tuple[str, bool]] = []
        for part in text.replace("[:", ":[").split(":"):
            if not part:
                continue
            opt = part.startswith("[")
            nodes.append((part.strip("[]"), opt))
        return cls(tuple(nodes))


@dataclass(frozen=True, slots=True)
class Command:
    header: tuple[str, ...]  # absolute node tokens as sent
    query: bool
    common: str | None  # "*IDN" ... for common commands
    params: str


def _node_ok(token: str, long: str) -> bool:
    t = token.upper()
    if t.endswith("1") and not long[-1:].isdigit():
        t = t[:-1]
    short = "".join(c for c in long if c.isupper() or c.isdigit())
    return t in (long.upper(), short.upper())


def match(pattern: Pattern, tokens: tuple[str, ...]) -> bool:
    """True if the header tokens spell ``pattern`` (optional nodes may be left out)."""

    def go(i: int, j: int) -> bool:
        if i == len(pattern.nodes):
            return j == len(tokens)
        long, opt = pattern.nodes[i]
        if j < len(tokens) and _node_ok(tokens[j], long) and go(i + 1, j + 1):
            return True
        return opt and go(i + 1, j)

    return go(0, 0)


def _split_outside_quotes(text: str, sep: str) -> tuple[list[str], bool]:
    """Split ``text`` on ``sep`` where it is not inside quotes; stripped parts, and
    whether a quote was left open."""
    out: list[str] = []
    cur: list[str] = []
    quote: str | None = None
    for c in text:
        if quote:
            cur.append(c)
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
            cur.append(c)
        elif c == sep:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    out.append("".join(cur).strip())
    return out, quote is not None


def split_line(line: str) -> list[str]:
    """Split a program line on ``;`` outside quotes."""
    parts, open_quote = _split_outside_quotes(line, ";")
    if open_quote:
        raise ScpiError(-150, "String data error")
    return [x for x in parts if x]


def split_params(params: str) -> list[str]:
    """Comma-separated parameters (quoted strings keep their commas), stripped."""
    if not params.strip():
        return []
    return _split_outside_quotes(params, ",")[0]


def parse_units(units: list[str], path: tuple[str, ...]) -> tuple[list[Command], tuple[str, ...]]:
    """Commands of one line, headers made absolute; returns the path left for the next line."""
    cmds: list[Command] = []
    for unit in units:
        head, _, params = unit.partition(" ")
        head = head.strip()
        if not head:
            raise ScpiError(-102, "Syntax error")
        query = head.endswith("?")
        name = head.rstrip("?")
        if name.startswith("*"):
            cmds.append(Command((), query, name.upper(), params.strip()))
            continue
        if name.startswith(":"):
            tokens = tuple(t for t in name[1:].split(":"))
        else:
            tokens = path + tuple(name.split(":"))
        if not tokens or any(not t or not t.replace("_", "").isalnum() for t in tokens):
            raise ScpiError(-102, "Syntax error")
        path = tokens[:-1]
        cmds.append(Command(tokens, query, None, params.strip()))
    return cmds, path

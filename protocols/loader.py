"""Load protocols from YAML with errors that point at the file's lines.

``load_protocol`` takes a path, YAML text or the name of a library protocol and returns a
validated :class:`~protocols.models.Protocol`, or raises :class:`ProtocolError` listing
every problem as ``file:line: field.path: rule``. The YAML is read by
:mod:`protocols.yamlsafe` (no tags, no constructors, bounded aliases, depth and size).

Beyond the models' own rules the loader checks what needs the whole protocol: C-rates
need a cell spec that resolves 1C, and the rules of :mod:`protocols.checks` (voltages,
currents and temperatures inside the limits, EIS frequencies, loop totals and duration),
each reported at its step's line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from . import models as m
from .checks import protocol_issues
from .errors import Issue, ProtocolError
from .yamlsafe import YamlDocument, YamlProblem, read_yaml, scalar_from_text

__all__ = [
    "MAX_STEPS",
    "dump_protocol_yaml",
    "load_protocol",
    "load_protocol_text",
    "protocol_issues",
]

MAX_STEPS = 100_000  # steps written in a file, counted after alias expansion

PathT = tuple[str | int, ...]

_NODE_TAGS = frozenset({"text", "step", "loop", "group"})
_STEP_KINDS = frozenset({"rest", "cc", "cv", "pulse", "eis", "chamber", "furnace", "gas"})
_TOP_FIELDS = ("limits", "cell", "sequence", "defaults")


def _all_field_names() -> list[str]:
    """The names a suggestion may offer: the documented one where a field has two
    (``temperature_degC``, not its internal ``temperature_C``)."""
    names: set[str] = set()
    for obj in vars(m).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            for name, info in obj.model_fields.items():
                names.add(info.alias or name)
    names.update({"current_abs_mA", "dV_mV", "dI_mA"})
    return sorted(names)


#: Names people write first, and the field they mean.
_COMMON_NAMES = {
    "temperature": "temperature_degC",
    "temp": "temperature_degC",
    "temperature_c": "temperature_degC",
    "voltage": "voltage_V",
    "voltage_window": "voltage_V",
    "current": "current_abs_mA",
    "current_max": "current_abs_mA",
    "max_current": "current_abs_mA",
    "cam_mass": "cam_mass_mg",
    "mass_mg": "cam_mass_mg",
    "specific_current": "c_rate_basis_mA_per_g",
    "repeats": "repeat",
    "cycles": "repeat",
    "capacity": "nominal_capacity_mAh",
    "nominal_capacity": "nominal_capacity_mAh",
    "capacity_mah": "nominal_capacity_mAh",
}
# ... and at the top of a protocol, where the names of a loop's fields do not apply
_TOP_NAMES = {"steps": "sequence", "program": "sequence", "procedure": "sequence"}


_FIELD_NAMES = _all_field_names()


# --------------------------------------------------------------------------- entry points


def load_protocol(
    path_or_text: str | Path,
    *,
    source_name: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> m.Protocol:
    """Load a protocol from a file path, YAML text, or a library name (``"rate_test"``)."""
    if isinstance(path_or_text, Path):
        return _load_file(path_or_text, source_name, overrides)
    text = path_or_text
    if "\n" in text or (":" in text and not Path(text).exists()):
        return load_protocol_text(text, source_name=source_name, overrides=overrides)
    p = Path(text)
    if p.exists():
        return _load_file(p, source_name, overrides)
    from .library import library_names, library_path

    if text in library_names():
        return _load_file(library_path(text), source_name or text, overrides)
    known = library_names()
    close = difflib.get_close_matches(text, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    names = ", ".join(known)
    raise ProtocolError(
        [Issue(text, None, "", f"no such file or library protocol{hint} (library: {names})")]
    )


def _load_file(
    path: Path, source_name: str | None, overrides: Mapping[str, str] | None
) -> m.Protocol:
    name = source_name or str(path)
    try:
        size = path.stat().st_size
        if size > _max_bytes():
            raise ProtocolError(
                [Issue(name, None, "", f"the file is larger than {_max_bytes() >> 20} MB")]
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise ProtocolError([Issue(name, None, "", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ProtocolError([Issue(name, line, "", "the file is not UTF-8 text")]) from None
    return load_protocol_text(text, source_name=name, overrides=overrides)


def _max_bytes() -> int:
    from .yamlsafe import MAX_BYTES

    return MAX_BYTES


def load_protocol_text(
    text: str,
    *,
    source_name: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> m.Protocol:
    """Load a protocol from YAML text; ``source_name`` names it in error messages."""
    name = source_name or "<text>"
    try:
        doc = read_yaml(text)
    except YamlProblem as exc:
        where = ".".join(str(p) for p in exc.path)
        raise ProtocolError([Issue(name, exc.line, where, exc.message)]) from None
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__
        raise ProtocolError(
            [Issue(name, 1, "", f"a protocol is a mapping (name:, sequence:, ...), not a {kind}")]
        )
    override_paths = _apply_overrides(doc, overrides or {}, name)
    n_steps = _count_steps(doc.data)
    if n_steps > MAX_STEPS:
        raise ProtocolError(
            [
                Issue(
                    name,
                    doc.line_of(("sequence",)),
                    "sequence",
                    f"{n_steps:,} steps (after aliases) is more than {MAX_STEPS:,}",
                )
            ]
        )
    try:
        protocol = m.Protocol.model_validate(doc.data, context={"defer_cell_check": True})
    except ValidationError as exc:
        raise ProtocolError(_locate(exc, doc, name, override_paths)) from None
    issues = [_issue(doc, name, path, msg, override_paths) for path, msg in protocol.cell_issues()]
    issues += [
        _issue(doc, name, path, msg, override_paths) for path, msg in protocol_issues(protocol)
    ]
    if issues:
        raise ProtocolError(issues)
    return protocol


# --------------------------------------------------------------------------- overrides


def _apply_overrides(
    doc: YamlDocument, overrides: Mapping[str, str], name: str
) -> dict[PathT, str]:
    """Set ``cell.<field>`` values from ``--set`` before validation; return their paths."""
    done: dict[PathT, str] = {}
    for key, text in overrides.items():
        parts = key.split(".")
        if len(parts) != 2 or parts[0] != "cell" or not parts[1]:
            raise ProtocolError(
                [Issue(name, None, key, "--set takes cell fields only, e.g. cell.cam_mass_mg=9.1")]
            )
        cell = doc.data.setdefault("cell", {})
        if not isinstance(cell, dict):
            raise ProtocolError(
                [Issue(name, doc.line_of(("cell",)), "cell", "cell must be a mapping")]
            )
        cell[parts[1]] = scalar_from_text(str(text))
        done[("cell", parts[1])] = f"--set {key}={text}"
    return done


# --------------------------------------------------------------------------- step budget


def _count_steps(data: Any) -> int:
    """Steps in sequence/steps lists, counting an aliased block once per use."""
    memo: dict[tuple[int, bool], int] = {}

    def count(node: Any, in_steps: bool) -> int:
        key = (id(node), in_steps)
        if key in memo:
            return memo[key]
        total = 0
        if isinstance(node, list):
            for item in node:
                if in_steps and (
                    isinstance(item, str) or (isinstance(item, dict) and "step" in item)
                ):
                    total += 1
                else:
                    total += count(item, False)
        elif isinstance(node, dict):
            for k, v in node.items():
                total += count(v, k in ("sequence", "steps"))
        memo[key] = total
        return total

    return count(data, False)


# --------------------------------------------------------------------------- locating


def _clean_loc(loc: tuple[Any, ...]) -> PathT:
    """Drop pydantic's union tags (``text``, ``step``, ``cc``...) that follow a list index."""
    out: list[str | int] = []
    i = 0
    while i < len(loc):
        tok = loc[i]
        if out and isinstance(out[-1], int) and tok in _NODE_TAGS:
            i += 1
            if i < len(loc) and loc[i] in _STEP_KINDS:
                i += 1
            continue
        out.append(tok)
        i += 1
    return tuple(out)


def _message(err: Mapping[str, Any], path: PathT) -> tuple[PathT, str]:
    kind = err["type"]
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "extra_forbidden" and path:
        field = str(path[-1])
        at_top = len(path) == 1  # a field of the protocol itself
        common = (_TOP_NAMES if at_top else _COMMON_NAMES).get(field.lower())
        pool = [n for n in (m.Protocol.model_fields if at_top else _FIELD_NAMES) if n != field]
        close = [common] if common else difflib.get_close_matches(field, pool, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return path, f"unknown field {field!r}{hint}"
    if kind == "missing" and path:
        return path[:-1], f"missing required field {path[-1]!r}"
    if kind == "union_tag_not_found":
        return path, (
            "not a step: write a step string ('Charge at 0.1C until 3.7 V') or a mapping "
            "with step: rest|cc|cv|pulse|eis|chamber|furnace|gas, or a loop (repeat:/steps:)"
        )
    if kind == "union_tag_invalid":
        return path, f"unknown step type: expected one of {', '.join(sorted(_STEP_KINDS))}"
    if not path:
        for top in _TOP_FIELDS:
            if re.search(rf"\b{top}\b", msg):
                return (top,), msg
    return path, msg


def _issue(
    doc: YamlDocument, name: str, path: PathT, msg: str, overrides: Mapping[PathT, str]
) -> Issue:
    dotted = ".".join(str(p) for p in path)
    for opath, origin in overrides.items():
        if path[: len(opath)] == opath:
            return Issue(name, None, dotted, f"{msg} (from {origin})")
    return Issue(name, doc.line_of(path) or 1, dotted, msg)


def _locate(
    exc: ValidationError, doc: YamlDocument, name: str, overrides: Mapping[PathT, str]
) -> list[Issue]:
    issues: list[Issue] = []
    seen: set[tuple[PathT, str]] = set()
    for err in exc.errors(include_url=False):
        path, msg = _message(err, _clean_loc(tuple(err["loc"])))
        if (path, msg) in seen:
            continue
        seen.add((path, msg))
        issues.append(_issue(doc, name, path, msg, overrides))
    issues.sort(key=lambda i: (i.line or 0, i.path))
    return issues


# --------------------------------------------------------------------------- dumping

_STEP_ADAPTER: TypeAdapter[Any] = TypeAdapter(m.Step)


def _compact(value: Any) -> Any:
    """A model as plain data without fields left at their defaults (``step`` always kept)."""
    if isinstance(value, BaseModel):
        text = getattr(value, "text", None)
        if isinstance(text, str) and _same_as_text(value, text):
            return text
        out: dict[str, Any] = {}
        for fname, info in type(value).model_fields.items():
            v = getattr(value, fname)
            if fname != "step" and not info.is_required():
                default = info.get_default(call_default_factory=True)
                if v == default:
                    continue
            out[fname] = _compact(v)
        return out
    if isinstance(value, list | tuple):
        return [_compact(v) for v in value]
    return value


def _same_as_text(step: BaseModel, text: str) -> bool:
    try:
        return bool(_STEP_ADAPTER.validate_python(_text_step(text)) == step)
    except (ValueError, ValidationError):
        return False


def _text_step(text: str) -> dict[str, Any]:
    from .stepstrings import parse_step

    return parse_step(text)


def dump_protocol_yaml(protocol: m.Protocol) -> str:
    """YAML that loads back into an equal protocol (steps written as strings when exact)."""
    return yaml.safe_dump(_compact(protocol), sort_keys=False, allow_unicode=True, width=100)

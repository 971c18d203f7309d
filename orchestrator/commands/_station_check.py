"""The station check of ``labrig validate --station`` and ``labrig run``: every step
within what the position's instruments reach, each problem as ``file:line: path: rule``.

The ranges come from the instrument registry (:mod:`orchestrator.run.ranges`);
this module only places each problem on its protocol file's line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labrig.protocols.errors import Issue

__all__ = ["range_summary", "station_problems"]


def _source(protocol_arg: str) -> tuple[str, Any]:
    """The name errors give the protocol (as the loader names it) and its YAML document
    (None when it cannot be read again: then problems carry no line)."""
    from labrig.protocols.library import library_names, library_path
    from labrig.protocols.yamlsafe import YamlProblem, read_yaml

    path = Path(protocol_arg)
    try:
        if "\n" not in protocol_arg and path.is_file():
            name, text = str(path), path.read_text(encoding="utf-8")
        elif protocol_arg in library_names():
            name, text = protocol_arg, library_path(protocol_arg).read_text(encoding="utf-8")
        else:
            return "<text>", None
        return name, read_yaml(text)
    except (OSError, UnicodeDecodeError, YamlProblem):
        return protocol_arg, None


def station_problems(
    protocol_arg: str, protocol: Any, station: Any, position: Any, kind: str
) -> list[str]:
    """Every step ``position``'s instruments cannot run, as ``file:line: path: rule``.

    A position of another ``kind`` than the protocol needs (a cell position for an
    anneal) is the run's to refuse, with its own message: nothing is listed here."""
    from ..run.ranges import position_problems

    if position.kind != kind:
        return []
    problems = position_problems(protocol, station, position)
    if not problems:
        return []
    name, doc = _source(protocol_arg)
    out = []
    for p in problems:
        line = doc.line_of(p.path) if doc is not None else None
        dotted = ".".join(str(x) for x in p.path)
        out.append(str(Issue(name, line, dotted, p.message)))
    return out


def range_summary(station: Any, position: Any) -> str:
    """One line of what the position's instruments reach (for ``validate --station``)."""
    from ..instruments import entry
    from ..run.ranges import format_quantity

    parts = []
    for _cap, label, ref in position.refs():
        name, _ = station.resolve(ref)
        inst = station.instruments[name]
        lim = entry(inst.driver).limits_for(inst.options)
        have = []
        if lim.frequency_Hz is not None:
            lo, hi = lim.frequency_Hz
            have.append(f"EIS {format_quantity(lo, 'Hz')}–{format_quantity(hi, 'Hz')}")
        if lim.current_A is not None:
            have.append(f"≤ {format_quantity(lim.current_A, 'A')}")
        if lim.temperature_C is not None:
            have.append(f"{lim.temperature_C[0]:g}..{lim.temperature_C[1]:g} °C")
        if lim.flow_sccm is not None:
            have.append(f"≤ {lim.flow_sccm:g} sccm")
        parts.append(f"{label} {ref}" + (f" ({', '.join(have)})" if have else ""))
    return "; ".join(parts)

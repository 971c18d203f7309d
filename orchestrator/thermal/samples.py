"""Sample IDs: which anneal treated which sample, so cell results can be grouped by it.

A furnace run lists the samples it treated in ``run.json`` (``"samples": [...]``), taken
from the protocol's ``cell.sample_id`` (several separated by commas), e.g.
``labrig run anneal_synthetic_air_400C --sim --set sample_id=NCM-A1,NCM-A2``. A cell run
names the sample its cathode was made from in ``cell.sample_id``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labrig.protocols.models import Protocol

__all__ = ["find_anneal_for_sample", "group_by_anneal", "samples_of"]


def samples_of(protocol: Protocol) -> list[str]:
    """The sample IDs a protocol names (``cell.sample_id``, comma-separated)."""
    cell = protocol.cell
    if cell is None or cell.sample_id is None:
        return []
    return [s.strip() for s in str(cell.sample_id).split(",") if s.strip()]


def _runs(runs_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for meta_path in sorted(Path(runs_dir).glob("*/run.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a run being written or a damaged one: not evidence of anything
        if isinstance(meta, dict):
            out.append((meta_path.parent, meta))
    return out


def _is_anneal(meta: dict[str, Any]) -> bool:
    return meta.get("kind") == "thermal" and isinstance(meta.get("samples"), list)


def find_anneal_for_sample(runs_dir: Path, sample_id: str) -> Path | None:
    """The run directory of the furnace run that treated ``sample_id``, or None.

    If several did, the latest finished one wins (a sample re-annealed after an aborted
    run was treated by the one that completed); with none finished, the latest.
    """
    hits = [
        (root, meta)
        for root, meta in _runs(runs_dir)
        if _is_anneal(meta) and sample_id in meta["samples"]
    ]
    if not hits:
        return None
    finished = [h for h in hits if h[1].get("state") == "finished"]
    pool = finished or hits
    return max(pool, key=lambda h: str(h[1].get("created", "")))[0]


def group_by_anneal(runs_dir: Path) -> dict[Path | None, list[Path]]:
    """Cell runs grouped by the anneal of the sample they name (None: no known anneal)."""
    groups: dict[Path | None, list[Path]] = {}
    for root, meta in _runs(runs_dir):
        if _is_anneal(meta):
            continue
        cell = meta.get("cell") or {}
        sample = cell.get("sample_id") if isinstance(cell, dict) else None
        anneal = find_anneal_for_sample(runs_dir, str(sample)) if sample else None
        groups.setdefault(anneal, []).append(root)
    return groups

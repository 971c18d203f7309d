"""No import cycles among the modules of labrig (a package's ``__init__`` counts as a
module, and imports under ``TYPE_CHECKING`` count too: they tie the design together just
the same)."""

from __future__ import annotations

from collections.abc import Iterable

import grimp

#: Cycles being broken elsewhere right now. Each entry is a group of modules a cycle may
#: run through; remove an entry as soon as its cycle is gone (and never add one).
ALLOWED_CYCLES: tuple[frozenset[str], ...] = ()


def import_cycles(graph: grimp.ImportGraph, modules: Iterable[str]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"),
                               ("p", "p.e"), ("p.e", "p"), ("p.d", "p.f")]:  # fmt: skip
        graph.add_import(importer=importer, imported=imported)
    cycles = import_cycles(graph, graph.modules)
    assert sorted(map(sorted, cycles)) == [["p", "p.e"], ["p.a", "p.b", "p.c"]]


def test_no_import_cycles_in_labrig() -> None:
    graph = grimp.build_graph("labrig")
    modules = {m for m in graph.modules if m == "labrig" or m.startswith("labrig.")}
    unexpected = [
        sorted(c) for c in import_cycles(graph, modules)
        if not any(c <= allowed for allowed in ALLOWED_CYCLES)
    ]  # fmt: skip
    assert not unexpected, "import cycles (break them; do not allow them):\n" + "\n".join(
        " <-> ".join(c) for c in unexpected
    )

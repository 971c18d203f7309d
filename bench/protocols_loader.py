"""Print how long the protocol loader takes on library files and on hostile input.

Run: python bench/protocols_loader.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from labrig.protocols import (
    ProtocolError,
    library_names,
    load_protocol,
    load_protocol_text,
    summarize,
)


def timed(label: str, fn: Callable[[], object]) -> None:
    t0 = time.perf_counter()
    try:
        fn()
        outcome = "ok"
    except ProtocolError as exc:
        outcome = "rejected: " + exc.issues[0].message[:60]
    print(f"{label:<42} {1e3 * (time.perf_counter() - t0):9.1f} ms  {outcome}")


def main() -> None:
    load_protocol("rate_test")  # warm up pint
    for name in library_names():
        timed(f"load+summarize {name}", lambda n=name: summarize(load_protocol(n)))
    bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    hostile = {
        "alias bomb": "name: b\n" + "\n".join(bomb) + "\nsequence: [Rest for 1 h]\n",
        "10 MB file": "name: x\ndescription: " + "x" * (10 << 20) + "\n",
        "nesting 500k deep": "name: x\nsequence: " + "[" * 500_000 + "]" * 500_000,
        "python tag": "name: !!python/object/apply:os.system [id]\n",
        "160k steps via aliases": "name: w\nlimits: {voltage_V: [2, 3], current_abs_mA: 1}\n"
        + "d: &s ["
        + ",".join(["Rest for 1 s"] * 400)
        + "]\nsequence:\n"
        + "  - {steps: *s}\n" * 400,
        "990k nodes through aliases": "name: w\nlimits: {voltage_V: [2, 3], current_abs_mA: 1}\n"
        + "d: &n ["
        + ",".join(["1"] * 1000)
        + "]\n"
        + "sequence:\n  - repeat: 5\n    steps: [Rest for 1 s]\n"
        + "    checkpoints:\n      - at: ["
        + ",".join(["*n"] * 989)
        + "]\n"
        + "        steps: [Rest for 1 s]\n",
    }
    for label, text in hostile.items():
        timed(label, lambda t=text: load_protocol_text(t))
    n = 45_000
    big = (
        "name: big\nlimits: {voltage_V: [2, 3.7], current_abs_mA: 5}\n"
        + ("cell: {cam_mass_mg: 8.4, c_rate_basis_mA_per_g: 200}\nsequence:\n")
        + "".join(f"  - Charge at 0.1C until 3.{i % 7} V or {i % 5 + 1} h\n" for i in range(n))
    )
    print(f"(legit file: {len(big) / 1e6:.2f} MB, {n:,} step strings)")
    timed("legit large file", lambda: load_protocol_text(big))


if __name__ == "__main__":
    main()

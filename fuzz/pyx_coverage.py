#!/usr/bin/env python3
"""Line coverage of the core's Cython sources (.pyx/.pxi) from clang's coverage of the C.

    python fuzz/pyx_coverage.py CORE_C LCOV [--missed FILE]

CORE_C is the C file Cython wrote with ``emit_linenums`` (``#line N "src/obengine/_frame.pxi"``
before the C of each source line); LCOV is ``llvm-cov export -format=lcov`` of a build from it.
clang's coverage mapping points at the C lines (it does not follow ``#line``), so each
instrumented C line is given to the source line of the last ``#line`` above it, and a source line
counts as reached when any of its C lines ran. Cython's utility code (after ``#line ..
"cython_utility"``) is left out. ``--missed FILE`` lists the source lines of FILE (a name such as
``_frame.pxi``) that never ran. fuzz/run.sh --coverage runs it.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict

LINE = re.compile(r'#line (\d+) "([^"]+)"')


def main() -> int:
    args = sys.argv[1:]
    missed_file = None
    if "--missed" in args:
        i = args.index("--missed")
        missed_file = args[i + 1]
        del args[i : i + 2]
    core_c, lcov = args

    # C line -> (source file, source line)
    origin: dict[int, tuple[str, int]] = {}
    current: tuple[str, int] | None = None
    with open(core_c, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, 1):
            match = LINE.match(text)
            if match:
                name = match.group(2)
                current = None if not name.endswith((".pyx", ".pxi")) else (name, int(match.group(1)))
            elif current is not None:
                origin[number] = current

    counts: dict[int, int] = {}
    in_core = False
    with open(lcov, encoding="utf-8") as f:
        for text in f:
            if text.startswith("SF:"):
                in_core = text.rstrip().endswith("/" + core_c.rsplit("/", 1)[-1])
            elif in_core and text.startswith("DA:"):
                line, count = text[3:].split(",")[:2]
                counts[int(line)] = counts.get(int(line), 0) + int(count)

    reached: dict[str, dict[int, bool]] = defaultdict(dict)
    for c_line, count in counts.items():
        if c_line in origin:
            name, line = origin[c_line]
            reached[name][line] = reached[name].get(line, False) or count > 0

    total_lines = total_hit = 0
    print(f"{'source':<28} {'lines':>6} {'reached':>8} {'cover':>7}")
    for name in sorted(reached):
        lines = reached[name]
        hit = sum(lines.values())
        total_lines += len(lines)
        total_hit += hit
        print(f"{name.rsplit('/', 1)[-1]:<28} {len(lines):>6} {hit:>8} {100 * hit / len(lines):>6.1f}%")
    print(f"{'TOTAL':<28} {total_lines:>6} {total_hit:>8} {100 * total_hit / max(total_lines, 1):>6.1f}%")
    if missed_file:
        for name in sorted(reached):
            if name.endswith(missed_file):
                missed = sorted(line for line, hit in reached[name].items() if not hit)
                print(f"never reached in {name}: {missed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Mutation score per module from mutmut 3's results in mutants/ (`make mutants`).

Reads the `*.meta` files mutmut writes beside each mutated module and prints, per module, the
mutants killed, survived, without tests and timed out, the score (killed / checked, a timeout
counted as killed) and the surviving mutant names, which `mutmut show NAME` prints as a diff.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

# mutmut 3.8.1's status_by_exit_code, reduced to what a score needs.
KILLED = {1, 3}
TIMEOUT = {-24, 24, 36, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


def main(argv: list[str]) -> int:
    only = argv[1] if len(argv) > 1 else ""
    root = Path("mutants")
    rows = []
    for meta in sorted(root.glob("bridge/**/*.py.meta")):
        module = str(meta.relative_to(root))[: -len(".meta")]
        if only and module != only:
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        count: Counter[str] = Counter()
        survivors = []
        for name, code in sorted(codes.items()):
            if code is None:
                count["not checked"] += 1
            elif code in KILLED:
                count["killed"] += 1
            elif code in TIMEOUT:
                count["timeout"] += 1
            elif code in SURVIVED:
                count["survived"] += 1
                survivors.append(name)
            elif code in NO_TESTS:
                count["no tests"] += 1
                survivors.append(name)
            else:
                count[f"exit {code}"] += 1
        caught = count["killed"] + count["timeout"]
        checked = caught + count["survived"] + count["no tests"]
        score = f"{100 * caught / checked:.0f} %" if checked else "-"
        rows.append((module, len(codes), count, score, survivors))
    for module, total, count, score, survivors in rows:
        parts = ", ".join(f"{v} {k}" for k, v in sorted(count.items()))
        print(f"{module}: {total} mutants, {parts}; score {score}")
        for name in survivors:
            print(f"    {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

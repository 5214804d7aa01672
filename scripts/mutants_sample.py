"""A fixed random sample of a module's mutants, for `make mutants MODULE=... SAMPLE=N`.

mutmut 3 has no sampling of its own; the big modules of the pure core have hundreds of mutants
each, too many for a 2-core machine in one sitting (docs/testing.md). This prints N mutant names
of MODULE, chosen with a fixed seed so that a run after new tests checks the same mutants again.
The names come from the `.meta` file mutmut wrote when it generated the mutants (any earlier
`make mutants` run does that).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    module, size = argv[1], int(argv[2])
    meta = Path("mutants") / (module + ".meta")
    if not meta.exists():
        print(f"no mutants generated for {module} yet: run `make mutants MODULE={module}` first")
        return 1
    names = sorted(json.loads(meta.read_text())["exit_code_by_key"])
    pick = random.Random(10).sample(names, min(size, len(names)))  # noqa: S311 - not crypto
    print(" ".join(sorted(pick)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Summarize a py-spy profile in collapsed-stack form (``py-spy record -f raw``).

    python -m tests.bench.profile_summary FILE.folded [--top 25]

Prints the share of samples per function, self (the frame on top) and inclusive (anywhere on
the stack, counted once per sample), and per package of the top frame. ``make bench`` writes
such files with ``--profile DIR``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::\d+)?\)$")


def _parse(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match.group("func"), match.group("file")


def _package(file: str) -> str:
    if not file:
        return "?"
    if file.startswith("<frozen"):
        return "python"
    head = file.split("/")[0]
    return head.removesuffix(".py") if "/" in file else "stdlib:" + head.removesuffix(".py")


def summarize(path: Path, top: int) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_parse(f) for f in stack.split(";")]
        leaf_func, leaf_file = frames[-1]
        self_time[f"{leaf_func} ({leaf_file})"] += count
        packages[_package(leaf_file)] += count
        seen = set()
        for func, file in frames:
            key = f"{func} ({file})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += count
    out = [f"{path.name}: {total} samples"]

    def block(title: str, counter: Counter[str]) -> None:
        out.append(title)
        for key, n in counter.most_common(top):
            out.append(f"  {100.0 * n / total:5.1f}%  {key}")

    block("self (top of stack), by package:", packages)
    block("inclusive (on the stack):", inclusive)
    block("self (top of stack):", self_time)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for path in args.files:
        sys.stdout.write(summarize(path, args.top) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""In-process cost of the bridge's own per-delivery work: no HTTP, no broker.

``python -m tests.bench.micro [--code DIR]`` times normalizing one ~1 KB ``message`` body and
logging one delivery line (JSON, a secret configured, inside a running uvloop loop, so lines are
coalesced as in the server), each the best of 5 repeats of 20,000 calls (the least disturbed by
other work on the machine), and a whole request through aiohttp's protocol without sockets,
floor and bare (:mod:`tests.bench.inproc`), with their ratio. With ``--code DIR`` the ``bridge``
package is imported from DIR, e.g. a ``git archive`` of an older commit, for a before/after.
Figures are a lower bound of what a delivery costs inside the server, where caches are shared
with aiohttp and aiokafka.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import timeit
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parents[2]
CALLS, REPEATS = 20_000, 5


def best(fn: object) -> float:
    return min(timeit.repeat(fn, number=CALLS, repeat=REPEATS)) / CALLS * 1e6  # type: ignore[arg-type]


def measure() -> dict[str, float]:
    import structlog
    import uvloop

    from bridge.contract.records import Topics
    from bridge.ingress.normalize import normalize
    from bridge.telemetry import logs
    from tests.bench.bodies import templates

    body = templates(64, kind="message")[3].replace(b"@ID@", b"micro-1-23")
    topics = Topics("micro")
    out = {"normalize_us": best(lambda: normalize(body, topics, received_at=time.time()))}
    stdout = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the log sink writes here until exit
    try:
        logs.configure("info", "json", secrets=["micro-token-0123456789"])
        log = structlog.get_logger("micro")
        fields = {
            "event_type": "message",
            "event_id": "message/micro-1-23/sha256:" + "a" * 40,
            "size": len(body),
            "outcome": "published",
            "topic": "micro.events.message",
        }

        async def lines() -> float:
            def hundred() -> None:
                for _ in range(100):
                    log.info("webhook", status=200, duration_ms=1.23, remote="127.0.0.1", **fields)

            runs = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                for _ in range(CALLS // 100):
                    hundred()
                    await asyncio.sleep(0)  # one loop turn: the sink writes its lines
                runs.append((time.perf_counter() - started) / CALLS * 1e6)
            return min(runs)

        out["log_line_us"] = uvloop.run(lines())
    finally:
        sys.stdout = stdout
    from tests.bench import inproc

    out.update(inproc.measure())  # a whole request, floor and bare (tests/bench/inproc.py)
    return {k: round(v, 2) for k, v in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.micro", description=__doc__)
    parser.add_argument("--code", metavar="DIR", help="import the bridge package from DIR")
    parser.add_argument("--inner", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:  # the bodies from this checkout, then bridge from DIR
        sys.path.insert(0, str(HERE))
        import tests.bench.bodies  # noqa: F401 - imported (and cached) before DIR comes first

        sys.path.insert(0, args.inner)
        import bridge

        assert Path(bridge.__file__).is_relative_to(Path(args.inner).resolve())
    elif args.code:
        argv = [sys.executable, __file__, "--inner", str(Path(args.code).resolve())]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done.returncode
    print(orjson.dumps(measure()).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

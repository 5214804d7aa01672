"""Command line: ``bridge serve|ingress|egress|simulator|config|tail|produce``.

Reads the environment once into :class:`~bridge.core.config.Settings`, configures logging, and hands
over to the composition root. An invalid configuration exits with status 2 and a message naming
each bad variable.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import orjson

from bridge.core.config import Role, Secret, Settings
from bridge.core.errors import ConfigError
from bridge.telemetry import logs

COMMANDS = {
    "serve": "ingress and egress in one process",
    "ingress": "webhook server only",
    "egress": "command consumer only",
    "simulator": "a local Spotler Message API simulator",
    "config": "print the effective configuration with secrets masked",
    "tail": "print records from the bridge's topics as they arrive",
    "produce": "put JSON lines from stdin on a topic (send-message, update-conversation, a name)",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == "tail":
            command.add_argument("topics", nargs="*", help="topics (default: every bridge topic)")
            command.add_argument("--from-beginning", action="store_true")
            command.add_argument("--max", type=int, default=0, help="stop after N records")
            command.add_argument("--timeout", type=float, default=0, help="stop after N seconds")
        if name == "produce":
            command.add_argument("topic", help="send-message, update-conversation, or a topic")
    args = parser.parse_args(argv)

    if args.command == "simulator":
        from bridge.simulator import SimulatorSettings, run_simulator

        try:
            sim = SimulatorSettings.from_env(os.environ)
        except ConfigError as exc:
            print(f"bridge: {exc}", file=sys.stderr)
            return 2
        logs.configure(
            os.environ.get("BRIDGE_LOG_LEVEL", "info").lower(),
            os.environ.get("BRIDGE_LOG_FORMAT", "json").lower(),
            secrets=_secret_values(sim),
        )
        return _run(run_simulator(sim))

    try:
        settings = Settings.from_env(os.environ)
        if args.command in ("serve", "ingress", "egress"):
            role: Role = args.command
            settings.check_role(role)
    except ConfigError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 2

    if args.command == "config":
        sys.stdout.write(orjson.dumps(settings.masked(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return 0
    logs.configure(settings.log_level, settings.log_format, secrets=_secret_values(settings))
    if args.command == "tail":
        from bridge.kafka.cli import tail

        return _run(tail(settings, args.topics, args.from_beginning, args.max, args.timeout))
    if args.command == "produce":
        from bridge.kafka.cli import produce

        return _run(produce(settings, args.topic, sys.stdin.readlines()))

    from bridge.runtime.app import run

    return _run(run(settings, role))


def _secret_values(settings: object) -> list[str]:
    """Every :class:`Secret` in a settings tree, revealed, for the log redactor only."""
    found: list[str] = []
    stack: list[object] = [settings]
    while stack:
        value = stack.pop()
        if isinstance(value, Secret):
            found.append(value.reveal())
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            stack.extend(getattr(value, f.name) for f in dataclasses.fields(value))
        elif isinstance(value, tuple | list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return found


def _run(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run on uvloop where it is installed (it is optional, e.g. not on Windows)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro) or 0
    result: int | None = uvloop.run(coro)
    return result or 0

"""Command line: ``bridge serve|ingress|egress|simulator|config|tail|produce|status`` and the
platform lifecycle: ``bridge channels``, ``webhooks sync|list``, ``topics ensure``, ``doctor``;
``bridge contract schemas|asyncapi`` prints the topics' contract, ``bridge spool status|drain``
looks after spools.

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

from bridge.core.config import Role, Settings
from bridge.core.errors import ConfigError
from bridge.core.parsers import Secret
from bridge.simulator.keys import Secret as SimulatorSecret
from bridge.telemetry import logs

COMMANDS = {
    "serve": "ingress and egress in one process",
    "ingress": "webhook server only",
    "egress": "command consumer only",
    "simulator": "a local Spotler Message API simulator",
    "config": "print the effective configuration with secrets masked",
    "tail": "print records from the bridge's topics as they arrive",
    "produce": "put JSON lines from stdin on a topic (send-message, update-conversation, a name)",
    "channels": "the channels the API key can use, and the key's scope",
    "webhooks": "sync: register BRIDGE_PUBLIC_URL as every channel's webhook; list: show them",
    "topics": "ensure: create the bridge's topics; report those that fall short",
    "doctor": "check Kafka, topics, the API key and scope, channels, webhooks, the public URL",
    "contract": "print or write (--out DIR) the topics' JSON Schemas or the AsyncAPI document",
    "spool": "status: each spool under BRIDGE_SPOOL_DIR; drain --dir PATH: drain one to Kafka",
    "status": "one command's delivery history from the status topic (docs/status.md)",
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
        if name == "channels":
            command.add_argument("--json", action="store_true", help="print JSON")
        if name == "webhooks":
            command.add_argument("action", choices=("sync", "list"))
            command.add_argument("--dry-run", action="store_true", help="print the plan only")
            command.add_argument("--prune", action="store_true", help="delete extra webhooks")
        if name == "spool":
            command.add_argument("action", choices=("status", "drain"))
            command.add_argument("--json", action="store_true", help="print JSON (status)")
            command.add_argument("--dir", help="the spool directory to drain (drain)")
            command.add_argument(
                "--timeout", type=float, default=300.0, help="seconds to wait for Kafka (drain)"
            )
        if name == "status":
            command.add_argument("command_id", metavar="COMMAND_ID")
            command.add_argument("--kind", default="send-message", help="the command's kind")
            command.add_argument("--json", action="store_true", help="print the latest record")
        if name == "topics":
            command.add_argument("action", choices=("ensure",))
            command.add_argument("--dry-run", action="store_true", help="print the plan only")
        if name == "contract":
            command.add_argument("what", choices=("schemas", "asyncapi"))
            command.add_argument("--out", metavar="DIR", help="write the files into DIR")
    args = parser.parse_args(argv)

    if args.command == "contract":  # needs no configuration
        from bridge.runtime.contract_files import contract

        return contract(args.what, args.out)

    if args.command == "simulator":
        from bridge.simulator import SimulatorConfigError, SimulatorSettings, run_simulator

        try:
            sim = SimulatorSettings.from_env(os.environ)
        except SimulatorConfigError as exc:
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

    if args.command == "spool":
        from pathlib import Path

        from bridge.runtime import spool_cli

        if args.action == "status":
            return spool_cli.status(settings, as_json=args.json, out=sys.stdout)
        if not args.dir:
            print("bridge spool drain: --dir PATH is required", file=sys.stderr)
            return 2
        return _run(spool_cli.drain(settings, Path(args.dir), timeout=args.timeout, out=sys.stdout))
    if args.command == "status":
        from bridge.kafka.status_cli import show

        return _run(show(settings, args.command_id, args.kind, as_json=args.json, out=sys.stdout))

    if args.command in ("channels", "webhooks", "topics", "doctor"):
        return _lifecycle(settings, args)

    from bridge.runtime.app import run

    return _run(run(settings, role))


def _lifecycle(settings: Settings, args: argparse.Namespace) -> int:
    """The platform lifecycle commands; a missing setting they need exits 2 naming it."""
    out = sys.stdout
    if args.command == "topics":
        from bridge.kafka.topics import ensure

        return _run(ensure(settings, dry_run=args.dry_run, out=out))
    from bridge.runtime import lifecycle

    try:
        if args.command == "channels":
            return _run(lifecycle.channels(settings, as_json=args.json, out=out))
        if args.command == "doctor":
            from bridge.runtime.doctor import doctor

            return _run(doctor(settings, out=out))
        if args.action == "list":
            return _run(lifecycle.webhooks_list(settings, out=out))
        sync = lifecycle.webhooks_sync(settings, dry_run=args.dry_run, prune=args.prune, out=out)
        return _run(sync)
    except lifecycle.Unusable as exc:
        print(f"bridge {args.command}: {exc}", file=sys.stderr)
        return 2


def _secret_values(settings: object) -> list[str]:
    """Every secret (the bridge's :class:`Secret`, the simulator's own) in a settings tree,
    revealed, for the log redactor only."""
    found: list[str] = []
    stack: list[object] = [settings]
    while stack:
        value = stack.pop()
        if isinstance(value, Secret | SimulatorSecret):
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

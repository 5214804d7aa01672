"""``bridge channels`` and ``bridge webhooks list|sync``: the platform side of a deployment.

Owns talking to the platform about the deployment itself: which channels the API key can use
(``GET /channels``, ``GET /keys/current``), and registering the bridge's public URL with the
current token as the one webhook of each channel (the rules are
:mod:`bridge.runtime.webhook_plan`'s). One channel failing never stops the others; the command
exits 1 naming every channel that failed. Output goes to the stream it is given; tokens are
never printed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TextIO

import orjson
from prometheus_client import CollectorRegistry

from bridge.api.client import SpotlerClient
from bridge.core.config import Settings
from bridge.core.errors import ApiError
from bridge.runtime.webhook_plan import Masker, Step, is_ours, plan_channel
from bridge.telemetry.metrics import Metrics


class Unusable(Exception):
    """A setting the command needs is missing; the message names it (exit 2)."""


@asynccontextmanager
async def platform(settings: Settings) -> AsyncIterator[SpotlerClient]:
    """An API client for one command (its metrics go to a registry of its own)."""
    if settings.api.api_key is None:
        raise Unusable("BRIDGE_SPOTLER_API_KEY: required to talk to the platform")
    client = SpotlerClient(settings.api, Metrics(CollectorRegistry()), max_connections=4)
    try:
        yield client
    finally:
        await client.close()


def describe(exc: ApiError) -> str:
    code = f" code {exc.code}" if exc.code else ""
    return f"HTTP {exc.status}{code}: {exc}"[:300]


async def channel_jids(settings: Settings, client: SpotlerClient) -> list[str]:
    """``BRIDGE_CHANNELS`` when set, else every channel ``GET /channels`` lists for the key."""
    if settings.platform.channels:
        return list(settings.platform.channels)
    return [str(c["jid"]) for c in await client.list_channels() if isinstance(c.get("jid"), str)]


async def channels(settings: Settings, *, as_json: bool, out: TextIO) -> int:
    """``bridge channels``: the key's scope and objects, and the channels it can use."""
    async with platform(settings) as client:
        try:
            key = await client.current_key()
            found = await client.list_channels()
        except ApiError as exc:
            print(f"bridge channels: the platform refused: {describe(exc)}", file=out)
            return 1
    scope = str(key.get("scope", "?"))
    objects = [o.get("jid") for o in key.get("objects") or [] if isinstance(o, dict)]
    if as_json:
        doc = {"key": {"id": key.get("id"), "scope": scope, "objects": objects}, "channels": found}
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    covered = ", ".join(map(str, objects)) or "all channels"
    print(f"API key {key.get('id')}  scope {scope}  objects {covered}", file=out)
    print(f"{'JID':<50} {'NAME':<30} RETENTION", file=out)
    for channel in found:
        name = str(channel.get("name") or "")
        print(
            f"{channel.get('jid')!s:<50} {name:<30} {channel.get('dataRetentionInDays')}", file=out
        )
    print(f"{len(found)} channels", file=out)
    return 0


def _tokens(settings: Settings) -> list[str]:
    return [t.reveal() for t in settings.ingress.webhook_tokens]


async def webhooks_list(settings: Settings, *, out: TextIO) -> int:
    """``bridge webhooks list``: every channel's webhooks, the bridge's marked, tokens masked."""
    url = settings.platform.public_url or ""
    tokens = _tokens(settings)
    mask = Masker(tokens)
    failed: list[str] = []
    async with platform(settings) as client:
        try:
            jids = await channel_jids(settings, client)
        except ApiError as exc:
            print(f"bridge webhooks: cannot list channels: {describe(exc)}", file=out)
            return 1
        for jid in jids:
            try:
                hooks = await client.list_webhooks(jid)
            except ApiError as exc:
                print(f"channel {jid}: FAILED {describe(exc)}", file=out)
                failed.append(jid)
                continue
            print(f"channel {jid}: {len(hooks)} webhooks", file=out)
            for hook in hooks:
                mine = "bridge" if is_ours(hook, url, tokens) else "other "
                events = ",".join(map(str, hook.get("events") or []))
                print(
                    f"  {mine} {hook.get('id')}  enabled {hook.get('enabled')}  url {hook.get('url')}"  # noqa: E501
                    f"  events {events}  headers {mask.headers(hook.get('headers'))}",
                    file=out,
                )
    return _finish("webhooks list", failed, out)


def _finish(command: str, failed: list[str], out: TextIO) -> int:
    if failed:
        print(
            f"bridge {command}: failed for {len(failed)} channel(s): {', '.join(failed)}", file=out
        )
        return 1
    return 0


def sync_inputs(settings: Settings) -> tuple[str, list[str]]:
    """The public URL and tokens sync needs; :class:`Unusable` naming what is missing."""
    if not settings.platform.public_url:
        raise Unusable("BRIDGE_PUBLIC_URL: required (the public URL of POST /webhooks)")
    tokens = _tokens(settings)
    if not tokens:
        raise Unusable("BRIDGE_WEBHOOK_TOKENS: required (its first token goes into the webhook)")
    return settings.platform.public_url, tokens


async def webhooks_sync(settings: Settings, *, dry_run: bool, prune: bool, out: TextIO) -> int:
    """``bridge webhooks sync``: print the plan per channel, apply it unless ``dry_run``."""
    url, tokens = sync_inputs(settings)
    failed: list[str] = []
    counts = {"create": 0, "update": 0, "delete": 0}
    async with platform(settings) as client:
        try:
            jids = await channel_jids(settings, client)
        except ApiError as exc:
            print(f"bridge webhooks sync: cannot list channels: {describe(exc)}", file=out)
            return 1
        for jid in jids:
            todo: list[Step] = []
            try:
                plan = plan_channel(jid, await client.list_webhooks(jid), url, tokens, prune=prune)
                print(f"channel {jid}: {'changes' if plan.changes else 'up to date'}", file=out)
                for line in [*(s.text for s in plan.steps), *plan.notes]:
                    print(f"  {line}", file=out)
                todo = [] if dry_run else list(plan.steps)
                while todo:  # in the plan's order: update (or create) first, delete after
                    step = todo[0]
                    await _apply(client, jid, step.action, step.webhook_id, step.body)
                    counts[step.action] += 1
                    todo.pop(0)
            except ApiError as exc:
                print(f"  FAILED {describe(exc)}", file=out)
                if exc.code == 1014:
                    print("  (another webhook of the bridge takes these events: --prune)", file=out)
                if todo:  # a partial failure: what was done stays, the rest is named
                    rest = ", ".join(f"{s.action} {s.webhook_id or 'webhook'}" for s in todo)
                    print(f"  not done: {rest}", file=out)
                failed.append(jid)
    if dry_run:
        print("dry run: nothing was changed", file=out)
    elif not any(counts.values()) and not failed:
        print(f"nothing to change: {len(jids)} channel(s) up to date", file=out)
    else:
        done = ", ".join(f"{n} {a}d" for a, n in counts.items())
        print(f"{done} on {len(jids)} channel(s)", file=out)
    return _finish("webhooks sync", failed, out)


async def _apply(
    client: SpotlerClient, jid: str, action: str, webhook_id: str | None, body: dict[str, Any]
) -> None:
    if action == "create":
        await client.create_webhook(jid, body)
    elif action == "update" and webhook_id is not None:
        await client.update_webhook(jid, webhook_id, body)
    elif action == "delete" and webhook_id is not None:
        await client.delete_webhook(jid, webhook_id)

"""``bridge doctor``: everything a deployment needs, checked, one line per check.

Owns the checks and their advice; each line says ``ok`` or ``FAIL``, what was found, and for a
failure what to do. The checks: Kafka reachable with the configured security settings; the
topics exist with the settings ``bridge topics ensure`` wants; the API key is valid and its
scope covers what egress calls (``assistant`` for update-conversation: the reference's
"Scopes"); the channels it covers; each channel's webhook is the bridge's, as
:mod:`bridge.runtime.webhook_plan` wants it (at ``BRIDGE_PUBLIC_URL``, the first token of
``BRIDGE_WEBHOOK_TOKENS``); the public URL answers an unauthenticated POST with 401. Exit 0 only
when all pass. Nothing here is part of readiness: a pod never waits on the platform's API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import aiohttp
from aiokafka.errors import KafkaError

from bridge.api.client import SpotlerClient
from bridge.core.config import Settings
from bridge.core.errors import ApiError
from bridge.kafka.topics import admin_client, inspect, wanted
from bridge.runtime.lifecycle import Unusable, channel_jids, describe, platform, sync_inputs
from bridge.runtime.webhook_plan import plan_channel

#: Key scopes that reach the assistant-labelled update-conversation endpoint ("Scopes"; owner is
#: the widest scope).
ASSISTANT_SCOPES = ("ASSISTANT", "OWNER")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        head = f"{'ok' if self.ok else 'FAIL':<4}  {self.name:<9} {self.detail}"
        return head if self.ok else f"{head}\n      → {self.fix}"


async def kafka_checks(settings: Settings) -> list[Check]:
    servers = settings.kafka.bootstrap_servers
    admin = admin_client(settings, timeout_ms=5000)
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        fix = (
            "check BRIDGE_KAFKA_BOOTSTRAP_SERVERS and BRIDGE_KAFKA_SECURITY_PROTOCOL/SASL_*/"
            "SSL_CAFILE (and that this host may reach the brokers)"
        )
        return [
            Check("kafka", False, f"{servers} ({settings.kafka.security_protocol}): {exc!r}", fix),
            Check("topics", False, "not checked: Kafka unreachable", "fix Kafka first"),
        ]
    try:
        findings = await inspect(admin, wanted(settings))
    except (KafkaError, OSError) as exc:
        return [Check("kafka", False, f"{servers}: {exc!r}", "check the broker and its ACLs")]
    finally:
        await admin.close()
    kafka = Check("kafka", True, f"{servers} ({settings.kafka.security_protocol})")
    bad = [f for f in findings if f.action != "ok"]
    if not bad:
        return [kafka, Check("topics", True, f"{len(findings)} topics with the wanted settings")]
    missing = [f.topic for f in bad if f.action == "create"]
    short = [f"{f.topic} ({f.detail})" for f in bad if f.action == "short"]
    detail = "; ".join(
        [*([f"missing {', '.join(missing)}"] if missing else []), *(f"short {s}" for s in short)]
    )
    fix = "run `bridge topics ensure`" + (
        "; a short topic needs an operator (more partitions reorder keys)" if short else ""
    )
    insync = [f.topic for f in bad if "min.insync.replicas" in f.detail and f.action == "short"]
    if insync:  # safe to change on a live topic; the value ensure wants is in the detail
        wanted_insync = next(s.min_insync for s in wanted(settings) if s.min_insync)
        fix += (
            f"; raise min.insync.replicas with `kafka-configs.sh --alter --entity-type topics "
            f"--entity-name <topic> --add-config min.insync.replicas={wanted_insync}`"
        )
    return [kafka, Check("topics", False, detail, fix)]


async def platform_checks(settings: Settings) -> list[Check]:
    try:
        url, tokens = sync_inputs(settings)
    except Unusable as exc:
        url, tokens = "", []
        config_problem = str(exc)
    else:
        config_problem = ""
    checks: list[Check] = []
    try:
        async with platform(settings) as client:
            try:
                key = await client.current_key()
            except ApiError as exc:
                fix = "set BRIDGE_SPOTLER_API_KEY to a valid key (and BRIDGE_SPOTLER_API_URL)"
                return [Check("api key", False, describe(exc), fix)]
            scope = str(key.get("scope", "")).upper()
            if scope in ASSISTANT_SCOPES:
                checks.append(Check("api key", True, f"valid, scope {scope}"))
            else:
                fix = "update-conversation needs a key with the ASSISTANT scope; issue one"
                checks.append(Check("api key", False, f"valid, but scope {scope}", fix))
            try:
                jids = await channel_jids(settings, client)
                usable = {str(c.get("jid")) for c in await client.list_channels()}
            except ApiError as exc:
                return [*checks, Check("channels", False, describe(exc), "check the key's access")]
            outside = [j for j in jids if j not in usable]
            if not jids or outside:
                detail = f"not usable with this key: {', '.join(outside)}" if outside else "none"
                fix = "give the key access to these channels, or fix BRIDGE_CHANNELS"
                checks.append(Check("channels", False, detail, fix))
            else:
                checks.append(Check("channels", True, ", ".join(jids)))
            if config_problem:
                checks.append(Check("webhooks", False, config_problem, "set it, then sync"))
                return checks
            checks += [await _webhook_check(client, jid, url, tokens) for jid in jids]
    except Unusable as exc:
        return [Check("api key", False, str(exc), "set it (a Secret in Kubernetes)")]
    return checks


async def _webhook_check(client: SpotlerClient, jid: str, url: str, tokens: list[str]) -> Check:
    try:
        hooks = await client.list_webhooks(jid)
    except ApiError as exc:
        return Check("webhooks", False, f"{jid}: {describe(exc)}", "check the key's access")
    plan = plan_channel(jid, hooks, url, tokens, prune=True)
    if not plan.changes:
        return Check("webhooks", True, f"{jid}: one webhook at {url}, current token")
    drift = "; ".join(" ".join(s.text.split()) for s in plan.steps)
    return Check("webhooks", False, f"{jid}: {drift}", "run `bridge webhooks sync` (--prune)")


async def public_url_check(settings: Settings) -> Check:
    url = settings.platform.public_url
    if not url:
        return Check(
            "public", False, "BRIDGE_PUBLIC_URL is not set", "set it to POST /webhooks' URL"
        )
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.post(url, data=b"{}", allow_redirects=False) as resp,
        ):
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        fix = "check the Ingress, DNS and TLS for BRIDGE_PUBLIC_URL"
        return Check("public", False, f"{url}: {type(exc).__name__}: {exc}"[:300], fix)
    if status == 401:
        return Check("public", True, f"{url} answers an unauthenticated POST with 401")
    fix = "BRIDGE_PUBLIC_URL must reach the bridge's POST /webhooks (with token auth on)"
    return Check("public", False, f"{url} answered {status}, not 401", fix)


async def doctor(settings: Settings, *, out: TextIO) -> int:
    checks = [
        *await kafka_checks(settings),
        *await platform_checks(settings),
        await public_url_check(settings),
    ]
    for check in checks:
        print(check.line(), file=out)
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} passed, {failed} failed", file=out)
    return 1 if failed else 0

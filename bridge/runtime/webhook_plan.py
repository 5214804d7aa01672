"""What ``bridge webhooks sync`` would change on one channel: a pure plan, printed as a diff.

Owns the rule of which webhooks are the bridge's and how they should look. A webhook is the
bridge's when it points at ``BRIDGE_PUBLIC_URL`` or carries one of ``BRIDGE_WEBHOOK_TOKENS`` in
its ``Authorization`` header (so a webhook left at an old URL is found and moved); every other
webhook belongs to someone else and is left alone. The bridge's one webhook takes every event of
the reference's "Webhooks" → "Events" table, is enabled, and carries
``Authorization: Bearer <first token>`` (other headers it has are kept). Tokens never appear in
the plan's text: they show as ``<token N>`` (their place in ``BRIDGE_WEBHOOK_TOKENS``) or
``<other token>``. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

#: The spotler/api-v3-reference.txt "Webhooks" → "Events" table, in its order.
WEBHOOK_EVENTS: tuple[str, ...] = (
    "custom", "echo", "handover", "label", "message",
    "note", "postback", "receipt", "template_pack", "typing",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Step:
    """One change: ``create`` (body), ``update`` (webhook id, changes), ``delete`` (id)."""

    action: str
    webhook_id: str | None
    body: dict[str, Any]
    text: str


@dataclass(slots=True)
class Plan:
    """The steps for one channel, plus webhooks it reports but keeps (extras without --prune)."""

    channel: str
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.steps)


def bearer(header_value: object) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, else None."""
    if not isinstance(header_value, str):
        return None
    scheme, _, token = header_value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authorization(headers: object) -> str | None:
    """The ``Authorization`` header's value (any case) in a webhook's ``headers``."""
    if not isinstance(headers, dict):
        return None
    return next((v for k, v in headers.items() if str(k).lower() == "authorization"), None)


class Masker:
    """Replaces tokens with ``<token N>`` / ``<other token>`` in anything shown to people."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = tokens

    def token(self, token: str | None) -> str:
        if token is None:
            return "<none>"
        if token in self._tokens:
            return f"<token {self._tokens.index(token) + 1}>"
        return "<other token>"

    def headers(self, headers: object) -> str:
        if not isinstance(headers, dict) or not headers:
            return "{}"
        shown = []
        for name, value in headers.items():
            if str(name).lower() == "authorization":
                token = bearer(value)
                value = f"Bearer {self.token(token)}" if token else "<hidden>"
            shown.append(f"{name}: {value}")
        return "{" + ", ".join(shown) + "}"


def _same_url(a: object, b: str) -> bool:
    return isinstance(a, str) and a.rstrip("/") == b.rstrip("/")


def is_ours(hook: dict[str, Any], url: str, tokens: list[str]) -> bool:
    return _same_url(hook.get("url"), url) or bearer(authorization(hook.get("headers"))) in tokens


def wanted_headers(current: object, token: str) -> dict[str, str]:
    kept = {
        str(k): str(v)
        for k, v in (current.items() if isinstance(current, dict) else [])
        if str(k).lower() != "authorization"
    }
    return {**kept, "Authorization": f"Bearer {token}"}


def _rank(hook: dict[str, Any], url: str, token: str) -> tuple[int, int, int]:
    """Which of several of ours to keep: at the URL first, then with the token, then all events."""
    return (
        not _same_url(hook.get("url"), url),
        bearer(authorization(hook.get("headers"))) != token,
        set(hook.get("events") or ()) != set(WEBHOOK_EVENTS),
    )


def plan_channel(
    channel: str, hooks: list[dict[str, Any]], url: str, tokens: list[str], *, prune: bool
) -> Plan:
    """The steps that leave exactly one webhook of ours, as it should be, on ``channel``."""
    mask = Masker(tokens)
    plan = Plan(channel)
    ours = sorted(
        (h for h in hooks if is_ours(h, url, tokens)), key=lambda h: _rank(h, url, tokens[0])
    )
    if not ours:
        body = {
            "url": url,
            "events": list(WEBHOOK_EVENTS),
            "headers": wanted_headers(None, tokens[0]),
            "enabled": True,
        }
        text = f"+ create  url {url}  events all {len(WEBHOOK_EVENTS)}  headers {mask.headers(body['headers'])}"  # noqa: E501
        plan.steps.append(Step("create", None, body, text))
        return plan
    keeper, extras = ours[0], ours[1:]
    deletes: list[Step] = []
    for extra in extras:
        what = f"{extra.get('id')}  url {extra.get('url')}  headers {mask.headers(extra.get('headers'))}"  # noqa: E501
        if prune:
            deletes.append(Step("delete", str(extra.get("id")), {}, f"- delete  {what}"))
        else:
            plan.notes.append(f"! extra   {what}  (kept; --prune deletes it)")
    # Update first, delete after: a failed update must not leave the channel without the
    # webhooks it has (issue 26). The platform refuses two webhooks at one URL taking the same
    # event (1014), so the events of extras at the URL join the kept webhook after the deletes.
    held = {e for h in extras if _same_url(h.get("url"), url) for e in h.get("events") or ()}
    first = [e for e in WEBHOOK_EVENTS if e not in held] if deletes else list(WEBHOOK_EVENTS)
    update = _update(keeper, url, first or None, tokens[0], mask)
    plan.steps += [update] if update else []
    plan.steps += deletes
    after = {"id": keeper.get("id"), "events": first or keeper.get("events")}
    if deletes and (rest := _update(after, None, list(WEBHOOK_EVENTS), None, mask)):
        later = "  (after the deletes; their webhooks take these events until then)"
        plan.steps.append(replace(rest, text=rest.text + later))
    return plan


def _update(
    hook: dict[str, Any], url: str | None, events: list[str] | None, token: str | None, mask: Masker
) -> Step | None:
    """The update that gives ``hook`` ``url``, ``events``, the headers with ``token`` and
    ``enabled`` (None: leave that part as it is); None when nothing changes."""
    changes: dict[str, Any] = {}
    diff: list[str] = []
    if url is not None and not _same_url(hook.get("url"), url):
        changes["url"] = url
        diff.append(f"url {hook.get('url')} → {url}")
    have = [e for e in hook.get("events") or [] if isinstance(e, str)]
    if events is not None and set(have) != set(events):
        changes["events"] = events
        added = sorted(set(events) - set(have))
        removed = sorted(set(have) - set(events))
        diff.append("events " + " ".join([*(f"+{e}" for e in added), *(f"-{e}" for e in removed)]))
    if token is not None:
        headers = wanted_headers(hook.get("headers"), token)
        if headers != hook.get("headers"):
            changes["headers"] = headers
            diff.append(f"headers {mask.headers(hook.get('headers'))} → {mask.headers(headers)}")
        if hook.get("enabled") is False:
            changes["enabled"] = True
            diff.append("enabled false → true")
    if not changes:
        return None
    text = f"~ update  {hook.get('id')}  " + "; ".join(diff)
    return Step("update", str(hook.get("id")), changes, text)

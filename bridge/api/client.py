"""Spotler Message API client: the calls egress and the lifecycle commands make, over one session.

Owns HTTP to the platform: URLs, the bearer key, timeouts, and the translation of every outcome
that is not a 2xx (network error, timeout, status, the platform's ``{"error": {"code",
"message"}, "traceId"}`` body, ``Retry-After``) into :class:`~bridge.core.errors.ApiError`, whose
``retriable`` flag is all the caller needs.

Redirects are never followed (a 3xx is a permanent failure naming its ``Location``: following
one turned a POST into a GET). Request URLs are built already encoded, so a JID's
percent-encoded ``;``, ``=``, ``,`` or ``:`` goes out as it was encoded. The request-id header
carries the command id with anything outside printable ASCII percent-encoded, so no id can make
the HTTP library raise. Metric labels are clamped to known sets
(:mod:`bridge.telemetry.metrics`).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yarl

from bridge.core.config import ApiSettings
from bridge.core.errors import ApiError
from bridge.telemetry.metrics import Metrics, api_code_label, api_status_label

USER_AGENT = "spotler-bridge/0.1"


class SpotlerClient:
    """Calls the platform. Create inside a running loop; close with :meth:`close`."""

    def __init__(
        self, settings: ApiSettings, metrics: Metrics, *, max_connections: int = 100
    ) -> None:
        if settings.api_key is None:
            raise ValueError("an API key is required")
        self._base = settings.url.rstrip("/")
        self._metrics = metrics
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.timeout, connect=min(settings.timeout, 5)),
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=60),
            headers={
                "Authorization": f"Bearer {settings.api_key.reveal()}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
        )

    async def close(self) -> None:
        await self._session.close()

    async def send_message(
        self, channel: str, contact: str, body: dict[str, Any], *, request_id: str
    ) -> dict[str, Any]:
        """``POST /channels/{channel}/messages/{contact}``; returns ``{"id": ...}``."""
        path = f"/channels/{quote(channel, safe='@')}/messages/{quote(contact, safe='@')}"
        return await self._call("POST", path, body, "send_message", request_id)

    async def update_conversation(
        self, channel: str, contact: str, changes: dict[str, Any], *, request_id: str
    ) -> dict[str, Any]:
        """``PATCH /channels/{channel}/conversations/{contact}``; returns the conversation."""
        path = f"/channels/{quote(channel, safe='@')}/conversations/{quote(contact, safe='@')}"
        return await self._call("PATCH", path, changes, "update_conversation", request_id)

    # -- the platform lifecycle: channels, the key, webhook configuration -----------------------

    async def list_channels(self) -> list[dict[str, Any]]:
        """``GET /channels`` ("Read channels"): the channels this key may use."""
        return _list(await self._call("GET", "/channels", None, "read_channels", "channels"))

    async def current_key(self) -> dict[str, Any]:
        """``GET /keys/current``: the key's ``scope`` and ``objects`` (the channels it may use)."""
        return await self._call("GET", "/keys/current", None, "read_current_key", "key")

    async def list_webhooks(self, channel: str) -> list[dict[str, Any]]:
        """``GET /channels/{channel}/webhooks`` ("Read webhooks")."""
        path = f"/channels/{quote(channel, safe='@')}/webhooks"
        return _list(await self._call("GET", path, None, "list_webhooks", "webhooks"))

    async def create_webhook(self, channel: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /channels/{channel}/webhooks`` ("Create a webhook"): events, url, headers."""
        path = f"/channels/{quote(channel, safe='@')}/webhooks"
        return await self._call("POST", path, body, "create_webhook", "webhooks")

    async def update_webhook(
        self, channel: str, webhook_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        """``PATCH /channels/{channel}/webhooks/{id}``: only the fields given change."""
        path = f"/channels/{quote(channel, safe='@')}/webhooks/{quote(webhook_id, safe='')}"
        return await self._call("PATCH", path, changes, "update_webhook", "webhooks")

    async def delete_webhook(self, channel: str, webhook_id: str) -> None:
        """``DELETE /channels/{channel}/webhooks/{id}``."""
        path = f"/channels/{quote(channel, safe='@')}/webhooks/{quote(webhook_id, safe='')}"
        await self._call("DELETE", path, None, "delete_webhook", "webhooks")

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, endpoint: str, request_id: str
    ) -> dict[str, Any]:
        started = time.perf_counter()
        status, code = 0, ""
        try:
            async with self._session.request(
                method,
                yarl.URL(self._base + path, encoded=True),
                data=orjson.dumps(body) if body is not None else None,
                headers={
                    "Content-Type": "application/json",
                    "X-Request-Id": header_safe(request_id),
                },
                allow_redirects=False,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                if 200 <= status < 300:
                    return _json_object(raw)
                if 300 <= status < 400:
                    location = resp.headers.get("Location", "(no Location header)")
                    raise ApiError(status, None, f"redirect to {location[:200]} not followed")
                error = _api_error(status, raw, resp.headers.get("Retry-After"))
                code = str(error.code or "")
                raise error
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, None, f"{type(exc).__name__}: {exc}"[:300], network=True) from exc
        finally:
            self._metrics.child(
                self._metrics.api_requests, endpoint, api_status_label(status), api_code_label(code)
            ).inc()
            self._metrics.child(self._metrics.api_duration, endpoint).observe(
                time.perf_counter() - started
            )


def header_safe(value: str, limit: int = 200) -> str:
    """``value`` for an HTTP header: printable ASCII kept, everything else percent-encoded, cut
    to ``limit`` characters without splitting an escape."""
    encoded = quote(value, safe=_HEADER_SAFE)
    if len(encoded) <= limit:
        return encoded
    cut = encoded[:limit]
    escape = cut.rfind("%", len(cut) - 2)  # a "%" in the last two places starts a cut escape
    return cut[:escape] if escape >= 0 else cut


def _printable(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, anything but printable ASCII shown as ``?``."""
    return "".join(c if " " <= c <= "~" else "?" for c in value[:limit])


_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def _list(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON array a list endpoint answers (:func:`_json_object` wraps it as ``value``)."""
    items = answer.get("value")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _api_error(status: int, raw: bytes, retry_after: str | None) -> ApiError:
    """The platform's error body as an :class:`ApiError`, with ``Retry-After`` parsed and,
    for the logs, its text as received (printable ASCII, bounded)."""
    doc = _json_object(raw)
    found = doc.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    code = error.get("code")
    message = error.get("message")
    trace = doc.get("traceId")
    return ApiError(
        status,
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        message if isinstance(message, str) else raw[:200].decode("utf-8", "replace"),
        trace_id=trace if isinstance(trace, str) else None,
        retry_after=parse_retry_after(retry_after),
        retry_after_text=_printable(retry_after, 100) if retry_after is not None else None,
    )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (RFC 9110 §10.2.3): delay-seconds (digits; a decimal
    fraction is tolerated) or an HTTP-date in any of its three forms (§5.6.7), never negative.
    None when absent or malformed (a sign, an exponent, ``inf``, another zone than GMT, ...)."""
    if not value:
        return None
    value = value.strip(" \t")
    if _DELAY.fullmatch(value):
        return float(value)
    when = _http_date(value, now if now is not None else time.time())
    return None if when is None else max(0.0, when - (now if now is not None else time.time()))


_DELAY = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_L = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MON = "(?P<mon>" + "|".join(_MONTHS) + ")"
_TIME = r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
_HTTP_DATES = (
    re.compile(rf"{_DAY}, (?P<d>[0-9]{{2}}) {_MON} (?P<y>[0-9]{{4}}) {_TIME} GMT"),  # IMF-fixdate
    re.compile(rf"{_DAY_L}, (?P<d>[0-9]{{2}})-{_MON}-(?P<yy>[0-9]{{2}}) {_TIME} GMT"),  # rfc850
    re.compile(rf"{_DAY} {_MON} (?P<d>[0-9]{{2}}| [0-9]) {_TIME} (?P<y>[0-9]{{4}})"),  # asctime
)


def _http_date(value: str, now: float) -> float | None:
    """The Unix time of an HTTP-date, or None when ``value`` is not one."""
    for form in _HTTP_DATES:
        match = form.fullmatch(value)
        if match is None:
            continue
        fields = match.groupdict()
        if fields.get("y") is not None:
            year = int(fields["y"])
        else:  # rfc850: a year over 50 years ahead is the last past year with those digits
            this_year = dt.datetime.fromtimestamp(now, dt.UTC).year
            year = this_year - this_year % 100 + int(fields["yy"])
            if year > this_year + 50:
                year -= 100
        try:
            when = dt.datetime(
                year, _MONTHS.index(fields["mon"]) + 1, int(fields["d"]),
                int(fields["h"]), int(fields["mi"]), min(int(fields["s"]), 59), tzinfo=dt.UTC,
            )  # fmt: skip
        except ValueError:  # day 32, hour 25, ...
            return None
        return when.timestamp()
    return None

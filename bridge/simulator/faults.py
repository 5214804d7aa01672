"""Fault injection: latency, errors and 429s on the send-message and conversation endpoints.

Owns the ``/_sim/faults`` configuration and the decision, per call, whether to fail it. The
middleware asks :meth:`FaultInjector.apply` after authentication and before the handler, so
faulted calls are never validated, recorded as messages, or acknowledged with receipts.

Order per call: latency (``latencyMs`` plus up to ``latencyJitterMs``), then ``failNext`` (the
next N calls fail with ``errorStatus``/``errorCode``), then ``rate429`` (429, code 1003, with a
``Retry-After`` header of ``retryAfter`` seconds: an integer when whole, else a decimal, which
real clients may not parse), then ``errorRate``. A ``failNext`` or ``errorRate`` fault whose
``errorStatus`` is 429 carries the same ``Retry-After`` header, so a one-shot 429 with a chosen
``Retry-After`` is ``{"failNext": 1, "errorStatus": 429, "retryAfter": 2}``.
``retryAfterHeader`` is sent verbatim instead (printable ASCII, up to 200 characters): a day, an
HTTP date, or a malformed value, as a client must expect them. With ``contacts``
set, only calls to those contact JIDs are affected (one slow or failing conversation beside
healthy ones). With ``endpoints`` set (route names of :data:`bridge.simulator.rules.ENDPOINTS`,
e.g. ``["read_channels"]``), the faults apply to those routes instead of the message and
conversation routes (:data:`bridge.simulator.api.FAULTY_ROUTES`).
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from bridge.simulator.responses import CODE_STATUS, STATUS_CODE, ApiProblem, validation_error
from bridge.simulator.rules import ENDPOINTS_BY_NAME

_FIELDS = {
    "errorRate": "error_rate",
    "errorStatus": "error_status",
    "errorCode": "error_code",
    "rate429": "rate_429",
    "retryAfter": "retry_after",
    "retryAfterHeader": "retry_after_header",
    "latencyMs": "latency_ms",
    "latencyJitterMs": "latency_jitter_ms",
    "failNext": "fail_next",
    "seed": "seed",
    "contacts": "contacts",
    "endpoints": "endpoints",
}


@dataclass(frozen=True, slots=True)
class FaultConfig:
    error_rate: float = 0.0
    error_status: int = 503
    error_code: int = 1003
    rate_429: float = 0.0
    retry_after: float = 1.0
    retry_after_header: str | None = None  # sent verbatim instead of retry_after
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    fail_next: int = 0
    seed: int | None = None
    contacts: tuple[str, ...] = ()  # only calls to these contacts fail; empty: every call
    endpoints: tuple[str, ...] = ()  # the routes faults apply to; empty: FAULTY_ROUTES

    @classmethod
    def from_json(cls, body: Any) -> FaultConfig:
        """Parse a ``POST /_sim/faults`` body; missing fields take their defaults."""
        if not isinstance(body, dict):
            raise validation_error("body: must be a JSON object")
        for key in body:
            if key not in _FIELDS:
                raise validation_error(f"{key}: unknown field; allowed: {', '.join(_FIELDS)}")
        _number(body, "errorRate", 0, 1)
        _number(body, "rate429", 0, 1)
        _number(body, "retryAfter", 0, 3600)
        _number(body, "latencyMs", 0, 60_000)
        _number(body, "latencyJitterMs", 0, 60_000)
        _number(body, "failNext", 0, 1_000_000, integer=True)
        _number(body, "errorStatus", 400, 599, integer=True)
        _number(body, "errorCode", 1001, 9999, integer=True)
        if body.get("seed") is not None:
            _number(body, "seed", -(2**63), 2**63, integer=True)
        header = body.get("retryAfterHeader")
        if header is not None and not (
            isinstance(header, str)
            and 0 < len(header) <= 200
            and all(" " <= c <= "~" for c in header)
        ):
            raise validation_error("retryAfterHeader: must be printable ASCII, 1 to 200 characters")
        contacts = body.get("contacts", [])
        if not isinstance(contacts, list) or not all(isinstance(c, str) for c in contacts):
            raise validation_error("contacts: must be a list of contact JIDs")
        endpoints = body.get("endpoints", [])
        if not isinstance(endpoints, list) or not all(
            isinstance(e, str) and e in ENDPOINTS_BY_NAME for e in endpoints
        ):
            raise validation_error("endpoints: must be a list of endpoint names (read_channels)")
        values = {_FIELDS[k]: v for k, v in body.items()}
        values["contacts"] = tuple(contacts)
        values["endpoints"] = tuple(endpoints)
        # Name only a status or only a code and the other follows the reference's table.
        if "errorStatus" in body and "errorCode" not in body:
            values["error_code"] = STATUS_CODE.get(body["errorStatus"], 1004)
        if "errorCode" in body and "errorStatus" not in body:
            values["error_status"] = CODE_STATUS.get(body["errorCode"], 500)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        plain = asdict(self)
        plain["contacts"] = list(self.contacts)
        plain["endpoints"] = list(self.endpoints)
        return {key: plain[attr] for key, attr in _FIELDS.items()}


def _number(
    body: dict[str, Any], key: str, low: float, high: float, *, integer: bool = False
) -> None:
    if key not in body:
        return
    value = body[key]
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        raise validation_error(f"{key}: must be {'an integer' if integer else 'a number'}")
    if not low <= value <= high:
        raise validation_error(f"{key}: must be between {low:g} and {high:g}")


class FaultInjector:
    """The active fault configuration, its random source and the ``failNext`` countdown."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self.remaining = config.fail_next
        self.rng = random.Random(config.seed)  # noqa: S311 - fault injection, not cryptography

    def to_json(self) -> dict[str, Any]:
        return {**self.config.to_json(), "failNextRemaining": self.remaining}

    def applies_to(self, route: str | None, default: frozenset[str]) -> bool:
        """Whether faults apply to the route named ``route``."""
        return route in (self.config.endpoints or default)

    async def apply(self, contact: str | None = None) -> None:
        """Sleep the configured latency, then raise :class:`ApiProblem` if this call fails."""
        c = self.config
        if c.contacts and contact not in c.contacts:
            return
        delay_ms = c.latency_ms + (
            self.rng.uniform(0, c.latency_jitter_ms) if c.latency_jitter_ms else 0
        )
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if self.remaining > 0:
            self.remaining -= 1
            raise self._error()
        if c.rate_429 and self.rng.random() < c.rate_429:
            raise ApiProblem(429, 1003, "Too many requests", headers=self._retry_after())
        if c.error_rate and self.rng.random() < c.error_rate:
            raise self._error()

    def _retry_after(self) -> dict[str, str]:
        if self.config.retry_after_header is not None:
            return {"Retry-After": self.config.retry_after_header}
        seconds = self.config.retry_after
        return {"Retry-After": str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"}

    def _error(self) -> ApiProblem:
        c = self.config
        headers = self._retry_after() if c.error_status == 429 else None
        return ApiProblem(c.error_status, c.error_code, headers=headers)

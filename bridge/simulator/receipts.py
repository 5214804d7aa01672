"""Receipts like the platform might send them: states after delays, out of order, repeated, and
for messages not sent through the API.

Owns the simulator's receipt plan (``POST /_sim/receipts`` sets it, ``GET /_sim/receipts`` shows
it and the truth: the receipts each message was given). The statuses it sends and their meaning
are an assumption (``rules.ASSUMPTIONS["receipt-status"]``): the reference lists none. Per sent
message the truth is drawn first (``failed`` with ``failRate``; else ``delivered``, then
``read`` with ``readRate``), then how it reaches the webhook: each receipt after ``delay`` plus up
to ``jitter`` seconds, the whole sequence reversed with ``shuffleRate`` (out of order), each
receipt sent twice with ``duplicateRate``, and with ``foreignRate`` one more ``delivered`` receipt
for a message id the API never returned (as a message sent from the Spotler inbox would have).
Independent of the bridge: it imports none of its rules.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge.simulator.responses import json_response, read_json, validation_error

DELIVERED, READ, FAILED = "delivered", "read", "failed"
_RATES = ("failRate", "readRate", "shuffleRate", "duplicateRate", "foreignRate")


@dataclass(slots=True)
class ReceiptPlan:
    delay: float | None = None  # None: the settings' receipt_delay
    jitter: float = 0.0
    fail_rate: float = 0.0
    read_rate: float = 1.0
    shuffle_rate: float = 0.0
    duplicate_rate: float = 0.0
    foreign_rate: float = 0.0
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)
    #: message id -> the statuses it was given, in the order they were sent
    truth: dict[str, list[str]] = field(default_factory=dict)
    foreign: list[str] = field(default_factory=list)
    #: message id -> the X-Request-Id header of the call that sent it (the caller's own id)
    requests: dict[str, str] = field(default_factory=dict)

    def configure(self, body: dict[str, Any]) -> None:
        allowed = {"delay", "jitter", "seed", *_RATES}
        for key, value in body.items():
            if key not in allowed:
                raise validation_error(f"{key}: unknown field; allowed: {', '.join(allowed)}")
            if key == "seed":
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise validation_error("seed: must be an integer")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise validation_error(f"{key}: must be a number, at least 0")
            if key in _RATES and value > 1:
                raise validation_error(f"{key}: a rate between 0 and 1")
        self.delay = body.get("delay")
        self.jitter = float(body.get("jitter", 0.0))
        self.fail_rate = float(body.get("failRate", 0.0))
        self.read_rate = float(body.get("readRate", 1.0))
        self.shuffle_rate = float(body.get("shuffleRate", 0.0))
        self.duplicate_rate = float(body.get("duplicateRate", 0.0))
        self.foreign_rate = float(body.get("foreignRate", 0.0))
        self.seed = body.get("seed")
        self.rng = random.Random(self.seed)  # noqa: S311 - test data, not cryptography

    def schedule(self, message_id: str, base_delay: float) -> list[tuple[float, str, str]]:
        """``(seconds after the send, message id, status)`` of each receipt to send."""
        rng = self.rng
        truth = [FAILED] if rng.random() < self.fail_rate else [DELIVERED]
        if truth == [DELIVERED] and rng.random() < self.read_rate:
            truth.append(READ)
        self.truth[message_id] = list(truth)
        sent = list(reversed(truth)) if rng.random() < self.shuffle_rate else list(truth)
        sent = [
            s
            for status in sent
            for s in [status] * (2 if rng.random() < self.duplicate_rate else 1)
        ]
        delay = self.delay if self.delay is not None else base_delay
        plan: list[tuple[float, str, str]] = []
        at = 0.0
        for status in sent:
            at += delay + (rng.uniform(0, self.jitter) if self.jitter else 0.0)
            plan.append((at, message_id, status))
        if self.foreign_rate and rng.random() < self.foreign_rate:
            foreign = secrets.token_hex(20)
            self.foreign.append(foreign)
            plan.append((delay, foreign, DELIVERED))
        return plan

    def to_json(self) -> dict[str, Any]:
        return {
            "delay": self.delay, "jitter": self.jitter, "failRate": self.fail_rate,
            "readRate": self.read_rate, "shuffleRate": self.shuffle_rate,
            "duplicateRate": self.duplicate_rate, "foreignRate": self.foreign_rate,
            "seed": self.seed, "truth": self.truth, "foreign": self.foreign,
            "requests": self.requests,
        }  # fmt: skip


RECEIPTS = web.AppKey("simulator_receipts", ReceiptPlan)


async def get_receipts(request: web.Request) -> web.Response:
    return json_response(request.app[RECEIPTS].to_json())


async def set_receipts(request: web.Request) -> web.Response:
    """Replace the receipt plan; fields left out take their defaults. The truth is kept."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise validation_error("body: must be a JSON object")
    request.app[RECEIPTS].configure(body)
    return json_response(request.app[RECEIPTS].to_json())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/_sim/receipts", get_receipts)
    app.router.add_post("/_sim/receipts", set_receipts)

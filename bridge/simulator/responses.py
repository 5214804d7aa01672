"""The platform's response format: JSON bodies, and errors as ``{"error", "traceId"}``.

Owns how the simulator answers, so every handler and middleware fails the same way. Handlers
raise :class:`ApiProblem`; the middleware turns it into the documented error body.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from bridge.simulator import rules

ERROR_MESSAGES = rules.ERROR_CODES
CODE_STATUS = rules.CODE_STATUS
#: The code a bare HTTP status is answered with, for faults that name only a status
#: (the inverse of ``rules.CODE_STATUS``; ``rules.ASSUMPTIONS["status"]``).
STATUS_CODE: Mapping[int, int] = {
    400: 1005, 401: 1001, 403: 1002, 404: 1009, 409: 1014, 429: 1003,
    500: 1004, 502: 1012, 503: 1003, 504: 1012,
}  # fmt: skip


class ApiProblem(Exception):
    """An error answer: HTTP status, platform code, message, and extra headers."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message or ERROR_MESSAGES.get(code, "Error")
        self.headers = dict(headers or {})
        super().__init__(f"{status} {code}: {self.message}")

    def response(self, trace_id: str) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message}, "traceId": trace_id}
        return json_response(body, status=self.status, headers=self.headers)


def validation_error(message: str) -> ApiProblem:
    return ApiProblem(400, 1005, message)


def not_found(message: str = "Not found") -> ApiProblem:
    return ApiProblem(404, 1009, message)


def new_trace_id() -> str:
    """Six hex characters, like the reference's ``"traceId": "7e6459"``."""
    return secrets.token_hex(3)


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; a :class:`ApiProblem` 400/1005 when it is not JSON."""
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise validation_error("Request body is not valid JSON") from None


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; a :class:`ApiProblem` 400/1005 otherwise."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise validation_error("body: must be a JSON object")
    return body

"""The simulator's request pipeline: record, authenticate, inject faults, format errors.

Owns what happens around every handler. API requests (everything outside ``/_sim``) are
recorded with their answer (the decoded ``path`` and the ``rawPath`` exactly as it arrived,
``received`` when the request arrived and ``time`` when it was answered, the body parsed and
its ``bodySha256``, so a test can tell that it arrived byte for byte), need
``Authorization: Bearer <key>`` (compared in constant time), must be within the key's scope
and channels (1002 otherwise: the endpoint's label from :data:`bridge.simulator.rules.ENDPOINTS`),
and may be faulted (send-message and conversation routes only). Every failure, from any route,
is answered in the platform's error format; unknown routes and methods are 404/1009; an
unexpected exception is 500/1004 and logged.
With an admin token configured (``SIMULATOR_ADMIN_TOKEN``), ``/_sim`` requests must carry it as
a bearer token (401/1001 otherwise), checked by :func:`bridge.simulator.keys.carries`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from bridge.simulator import checks, rules
from bridge.simulator.api import FAULTY_ROUTES
from bridge.simulator.catalog import REQUEST_KEY
from bridge.simulator.keys import ApiKey, carries, find_key
from bridge.simulator.responses import STATUS_CODE, ApiProblem, new_trace_id
from bridge.simulator.state import SETTINGS, STATE

log = structlog.get_logger(__name__)
ADMIN_PREFIX = "/_sim"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authenticate(request: web.Request) -> ApiKey | None:
    return find_key(request.headers.get("Authorization", ""), request.app[SETTINGS].api_keys)


def _check_access(request: web.Request, key: ApiKey) -> None:
    """1002 unless the key's scope reaches the endpoint's label and its channel is the key's."""
    endpoint = rules.ENDPOINTS_BY_NAME.get(request.match_info.route.name or "")
    if endpoint is None:
        return
    if not key.reaches(endpoint.label):
        raise ApiProblem(403, 1002, f"Access denied: {endpoint.section} needs {endpoint.label}")
    channel = request.match_info.get("channelJid")
    if channel is not None:
        checks.check_jid(channel, "channelJid")
        if not key.may_use(channel):
            raise ApiProblem(403, 1002, "Access denied: the key has no access to this channel")


def _check_admin(request: web.Request) -> None:
    token = request.app[SETTINGS].admin_token
    if token is not None and not carries(request.headers.get("Authorization", ""), token):
        raise ApiProblem(401, 1001, "Unauthorized: /_sim needs the admin token")


def _problem_from_http(exc: web.HTTPException) -> ApiProblem:
    if exc.status in (404, 405):
        return ApiProblem(404, 1009, "Not found")
    if exc.status == 413:
        return ApiProblem(413, 1005, "Request body too large")
    return ApiProblem(exc.status, STATUS_CODE.get(exc.status, 1005 if exc.status < 500 else 1004))


@web.middleware
async def platform_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run ``handler`` the way the platform would, and record API calls."""
    received = time.time()
    trace_id = new_trace_id()
    api = not request.path.startswith(ADMIN_PREFIX + "/") and request.path != ADMIN_PREFIX
    key = _authenticate(request) if api else None
    is_authorized = key is not None or not api
    problem: ApiProblem | None = None
    try:
        if not api:
            _check_admin(request)
        elif key is None:
            raise ApiProblem(401, 1001, "Unauthorized")
        if key is not None:
            request[REQUEST_KEY] = key
            _check_access(request, key)
        faults = request.app[STATE].faults
        if api and faults.applies_to(request.match_info.route.name, FAULTY_ROUTES):
            await faults.apply(request.match_info.get("contactJid"))
        response = await handler(request)
    except ApiProblem as exc:
        problem = exc
    except web.HTTPException as exc:
        problem = _problem_from_http(exc)
    except Exception:
        log.exception("simulator.handler_failed", method=request.method, path=request.path)
        problem = ApiProblem(500, 1004)
    if problem is not None:
        response = problem.response(trace_id)
    if api:
        await _record(request, response, is_authorized, problem, trace_id, received)
    return response


async def _record(
    request: web.Request,
    response: web.StreamResponse,
    is_authorized: bool,
    problem: ApiProblem | None,
    trace_id: str,
    received: float,
) -> None:
    body: Any = None
    raw_body: str | None = None
    try:
        raw = await request.read() if request.body_exists else b""
    except web.HTTPException:
        raw = b""
    if raw:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raw_body = raw.decode("utf-8", "replace")[:10_000]
    request.app[STATE].requests.append(
        {
            "authorized": is_authorized,
            "body": body,
            "bodySha256": hashlib.sha256(raw).hexdigest() if raw else None,
            "code": problem.code if problem else None,
            "headers": {
                str(k): v for k, v in request.headers.items() if k.lower() != "authorization"
            },
            "method": request.method,
            "path": request.path,
            "query": {str(k): v for k, v in request.query.items()},
            "rawBody": raw_body,
            "rawPath": request.raw_path,
            "received": received,
            "status": response.status,
            "time": time.time(),
            "traceId": trace_id if problem else None,
        }
    )
    log.debug(
        "simulator.request",
        method=request.method,
        path=request.path,
        status=response.status,
        code=problem.code if problem else None,
    )

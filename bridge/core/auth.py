"""Bearer-token authentication of the webhook port (the simulator keeps its own, as a witness).

Pure: it sees a header value and the accepted secrets, never a request. The comparison is
constant-time and runs against every accepted token, so the time taken says nothing about which
token nearly matched. Any header value is safe to pass, including non-ASCII and control bytes:
such a header simply does not match.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from bridge.core.parsers import Secret


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else ``None``."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def authorized(header: str, accepted: Iterable[Secret]) -> bool:
    """Whether ``header`` carries one of the ``accepted`` tokens (constant time per token)."""
    token = bearer_token(header)
    if token is None:
        return False
    given = _bytes(token)
    matches = [hmac.compare_digest(given, _bytes(t.reveal())) for t in accepted]
    return any(matches)


def _bytes(text: str) -> bytes:
    # surrogatepass: a header decoded with surrogates still compares (and never matches) instead
    # of raising UnicodeEncodeError, which would turn a bad header into an error answer.
    return text.encode("utf-8", "surrogatepass")

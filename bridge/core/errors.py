"""The bridge's error tree. Adapters translate third-party errors into these at their edge.

::

    BridgeError                    retriable?  raised by
    ├── ConfigError                no          config (bad or missing BRIDGE_* variables)
    ├── PublishError               yes         publisher (Kafka did not acknowledge)
    │   └── PublishTimeout         yes         publisher (no acknowledgement in time)
    ├── SpoolError                 no          spool (full or unwritable: answer 503)
    ├── InvalidCommand             no          validation (shape, JIDs, message, fields)
    └── ApiError                   depends     api_client (HTTP status and platform code)

Callers branch on :attr:`BridgeError.retriable`, never on the concrete class of a library error.
This module imports nothing outside the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    #: Whether the same operation may succeed when tried again later.
    retriable: bool = False


class ConfigError(BridgeError):
    """One or more settings are invalid; ``problems`` names each variable."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


class PublishError(BridgeError):
    """Kafka did not take a record (broker down, not enough replicas, ...)."""

    retriable = True


class PublishTimeout(PublishError):
    """Kafka did not acknowledge a record within the configured time."""


class SpoolError(BridgeError):
    """The spool cannot take a record (full, or the disk failed)."""


class InvalidCommand(BridgeError):
    """A command is malformed; ``reason`` says which field and why. Never sent, never retried."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# Platform error codes (api-v3-reference "Error codes") that can succeed when tried again.
RETRIABLE_CODES = frozenset({1003, 1004, 1012})
# Every documented code ("Error codes": 1001-1015); a code outside it does not decide.
DOCUMENTED_CODES = frozenset(range(1001, 1016))


def _retriable(status: int, code: int | None, *, network: bool) -> bool:
    """DESIGN.md "Egress": the platform code decides first, then the HTTP status (a 500
    carrying 1005 is not retried; 408 and a 5xx without a code are). Network errors, timeouts
    and 429 always retry."""
    if network or status == 429:
        return True
    if code in DOCUMENTED_CODES:
        return code in RETRIABLE_CODES
    return status == 408 or status >= 500


class ApiError(BridgeError):
    """A failed call to the platform: a status (0 for no response), a platform code, a message."""

    def __init__(
        self,
        status: int,
        code: int | None,
        message: str,
        *,
        trace_id: str | None = None,
        retry_after: float | None = None,
        network: bool = False,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.trace_id = trace_id
        self.retry_after = retry_after
        self.network = network
        self.retriable = _retriable(status, code, network=network)
        super().__init__(f"HTTP {status} code {code}: {message}")

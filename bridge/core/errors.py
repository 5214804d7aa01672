"""The bridge's error tree. Adapters translate third-party errors into these at their edge.

::

    BridgeError                    retriable?  raised by
    ├── ConfigError                no          config (bad or missing BRIDGE_* variables)
    ├── PublishError               yes         publisher (Kafka did not acknowledge)
    │   ├── PublishTimeout         yes         publisher (no acknowledgement in time)
    │   └── RecordRejected         no          publisher (too large, invalid, not authorized)
    ├── SpoolError                 no          spool (full or unwritable: answer 503)
    ├── InvalidCommand             no          validation (shape, JIDs, message, fields)
    └── ApiError                   depends     api client (HTTP status and platform code)

Third-party errors (aiokafka, aiohttp) never travel past the adapter that met them. Retry
decisions read :attr:`BridgeError.retriable`; callers still catch a bridge class where the
handling differs by kind (e.g. the spool takes a record on :class:`PublishError`).
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


class RecordRejected(PublishError):
    """Kafka refused this record for good (too large, invalid, not authorized).

    Sending the same record again cannot succeed: it is dead-lettered, never retried or spooled.
    """

    retriable = False


class SpoolError(BridgeError):
    """The spool cannot take a record (full, or the disk failed)."""


class InvalidCommand(BridgeError):
    """A command is malformed; ``reason`` says which field and why. Never sent, never retried."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# Platform error codes (docs/platform.md, "The API") that can succeed when tried again.
RETRIABLE_CODES = frozenset({1003, 1004, 1012})
#: Every code the reference documents ("Errors"); the others are never retried.
DOCUMENTED_CODES = frozenset(range(1001, 1016))
#: Statuses that can succeed later when the body names no documented code.
RETRIABLE_STATUSES = frozenset({408, 429})


def is_retriable(status: int, code: int | None, *, network: bool = False) -> bool:
    """The platform code decides first, then the HTTP status (DESIGN, "Egress").

    A documented code settles it (a 500 carrying 1005 is not retried); without one, network
    errors, 408, 429 and 5xx retry. Redirects (3xx) and every other status never do.
    """
    if network:
        return True
    if code in DOCUMENTED_CODES:
        return code in RETRIABLE_CODES
    return status in RETRIABLE_STATUSES or status >= 500


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
        retry_after_text: str | None = None,
        network: bool = False,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.trace_id = trace_id
        self.retry_after = retry_after
        self.retry_after_text = retry_after_text  # the Retry-After header as received, if any
        self.network = network
        self.retriable = is_retriable(status, code, network=network)
        super().__init__(f"HTTP {status} code {code}: {message}")

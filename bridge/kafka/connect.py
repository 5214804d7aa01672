"""Kafka connections: client options, starting a client with retry, and telling a refusal.

Shared by the producers (:mod:`bridge.kafka.producer`, :mod:`bridge.kafka.rdkafka`), the command
consumer and the topic tools. A refusal (TLS trust, SASL credentials) is told apart from a broker
that is away, so it is reported naming the variable to fix instead of retried forever.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.helpers import create_ssl_context

from bridge.core.backoff import Backoff
from bridge.core.config import KafkaSettings
from bridge.core.errors import ConfigError

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: The longest wait between connection attempts of the producer, and between sessions that
#: ended without an acknowledgement: a new session starts within this time of Kafka's return.
RECONNECT_MAX = 2.0


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by the producer and the consumer."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
        "client_id": "spotler-bridge",
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        try:
            options["ssl_context"] = create_ssl_context(cafile=kafka.ssl_cafile)
        except OSError as exc:  # missing file, or not PEM certificates (ssl.SSLError)
            raise ConfigError(
                [f"BRIDGE_KAFKA_SSL_CAFILE: cannot load {kafka.ssl_cafile!r} as a CA bundle: {exc}"]
            ) from None
    if kafka.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = (
            kafka.sasl_password.reveal() if kafka.sasl_password else None
        )
    return options


class KafkaRefused(ConfigError):
    """The brokers refuse this client for good (credentials, TLS trust): retrying cannot help."""


async def refusal(kafka: KafkaSettings) -> str | None:
    """Why the brokers refuse these settings, naming the variable to fix; None if they do not.

    aiokafka's start only says "Unable to bootstrap"; one direct connection to each bootstrap
    server tells a refusal (the certificate is not trusted, the credentials are rejected) from
    a broker that is away or slow (``None``: worth retrying).
    """
    if kafka.security_protocol == "PLAINTEXT":
        return None
    options = client_options(kafka)
    for server in kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            continue
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"),
                    int(port),
                    client_id=options["client_id"],
                    ssl_context=options.get("ssl_context"),
                    security_protocol=kafka.security_protocol,
                    sasl_mechanism=options.get("sasl_mechanism", "PLAIN"),
                    sasl_plain_username=options.get("sasl_plain_username"),
                    sasl_plain_password=options.get("sasl_plain_password"),
                ),
                timeout=10,
            )
        except ssl.SSLCertVerificationError as exc:
            return (
                f"BRIDGE_KAFKA_SSL_CAFILE: the certificate of {server.strip()} is not trusted "
                f"({exc.verify_message}); set it to the CA bundle that signed the brokers' "
                f"certificates (now {kafka.ssl_cafile or 'unset: the system CAs'})"
            )
        except SaslAuthenticationFailed as exc:
            return (
                f"BRIDGE_KAFKA_SASL_USERNAME / BRIDGE_KAFKA_SASL_PASSWORD: {server.strip()} "
                f"rejected user {kafka.sasl_username!r} with {kafka.sasl_mechanism} ({exc})"
            )
        except UnsupportedSaslMechanismError as exc:
            return f"BRIDGE_KAFKA_SASL_MECHANISM: {server.strip()}: {exc}"
        except (KafkaError, OSError, TimeoutError):
            continue  # away, slow, or not speaking TLS yet: retry
        conn.close()
    return None


async def start_with_retry(
    make: Callable[[], T], what: str, retry_max: float = 10.0, *, kafka: KafkaSettings | None = None
) -> T:
    """Make and start an aiokafka client, again and again with backoff until one starts.

    A client whose start failed is stopped before the next try (it holds connections). With
    ``kafka``, a failure the brokers will repeat forever (:func:`refusal`) is not retried: it is
    logged naming the variable to fix and raised as :class:`KafkaRefused`.
    """
    retry = Backoff(0.2, retry_max)
    while True:
        try:
            client: Any = make()
        except ConfigError as exc:  # e.g. an unreadable CA file
            log.error(f"{what}.misconfigured", error="; ".join(exc.problems))
            raise
        try:
            await client.start()
        except (KafkaError, OSError) as exc:
            await client.stop()
            problem = await refusal(kafka) if kafka is not None else None
            if problem is not None:
                log.error(f"{what}.refused", error=problem)
                raise KafkaRefused([problem]) from None
            delay = retry.next()
            log.warning(f"{what}.connect_failed", error=str(exc), retry_in=round(delay, 1))
            await asyncio.sleep(delay)
            continue
        except BaseException:
            await client.stop()
            raise
        started: T = client
        return started

"""Size limits that tie settings to the spool's format: what one record can grow to.

Owns the bound between the webhook body limit, the spool's frame limit and the spool's size
(issues 26.2, 26.11): every record that can be acknowledged can be spooled and read back.
Pure, no I/O.
"""

from __future__ import annotations

#: Largest payload of one spool frame (:mod:`bridge.ingress.frames`): the spool refuses a larger
#: record, and its reader holds at most this much of one record in memory.
SPOOL_FRAME_LIMIT = 64 * 1024 * 1024
#: A record is at most this many times its body: a dead letter JSON-escapes a control
#: character into six bytes (an event keeps its body about twice: as fields and as payload).
RECORD_EXPANSION = 6
#: Bytes a record adds to that: the CloudEvent's envelope, topic, key, id and headers.
RECORD_OVERHEAD = 64 * 1024


def largest_record(max_body_bytes: int) -> int:
    """The largest spool frame a body of ``max_body_bytes`` can become (measured in
    tests/unit/ingress/test_spool_frame_limit.py)."""
    return RECORD_EXPANSION * max_body_bytes + RECORD_OVERHEAD


def spool_limits(max_body_bytes: int, spool_max_bytes: int) -> list[str]:
    """What is wrong with this body limit and spool size, one ``NAME: ...`` line each."""
    largest = largest_record(max_body_bytes)
    if largest > SPOOL_FRAME_LIMIT:
        most = (SPOOL_FRAME_LIMIT - RECORD_OVERHEAD) // RECORD_EXPANSION
        return [
            f"BRIDGE_MAX_BODY_BYTES: must be at most {most}, got {max_body_bytes}: a record is up "
            f"to {RECORD_EXPANSION} x its body + {RECORD_OVERHEAD} bytes and one spool frame "
            f"holds at most {SPOOL_FRAME_LIMIT} bytes"
        ]
    if largest > spool_max_bytes:
        return [
            f"BRIDGE_SPOOL_MAX_BYTES: must be at least {largest} (the largest record, "
            f"{RECORD_EXPANSION} x BRIDGE_MAX_BODY_BYTES + {RECORD_OVERHEAD}), got "
            f"{spool_max_bytes}"
        ]
    return []

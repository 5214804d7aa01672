"""Jabber IDs (JIDs) as the platform uses them: ``<id>@<kind>.eazy.im``.

Pure functions shared by normalization (which side of an event is the channel), validation
(which JIDs a command may name) and the simulator. No I/O.
"""

from __future__ import annotations

import functools
import re

#: Kinds of JID that are not a messaging channel or contact (docs/platform.md, "JIDs").
NON_CHANNEL_KINDS = frozenset({"agent", "ai", "team", "label", "list"})
#: Channel kinds whose ids are phone numbers without '+'.
PHONE_KINDS = frozenset({"whatsapp", "sms"})

# Matched whole (``fullmatch``: ``$`` would accept a trailing newline); the local part admits no
# whitespace and no control character (C0, DEL, C1), which could split log lines or keys.
_JID = re.compile(
    r"(?P<local>[^@\s/\x00-\x1f\x7f-\x9f]{1,200})@(?P<kind>[a-z0-9][a-z0-9-]{0,62})\.eazy\.im"
)
_PHONE = re.compile(r"[1-9][0-9]{5,19}")


#: Longest JID: 200 characters of local part, ``@``, a 63-character kind and ``.eazy.im``.
_MAX_JID = 200 + 1 + 63 + 8


def jid_kind(value: object) -> str | None:
    """The kind of a JID (``whatsapp``, ``apple``, ``agent``...), or None if it is not one."""
    if not isinstance(value, str) or len(value) > _MAX_JID:
        return None
    return _kind(value)


@functools.lru_cache(maxsize=8192)
def _kind(value: str) -> str | None:
    # Cached: a body names its JIDs several times, and the same conversations come back. Only
    # strings short enough to be a JID get here, so the cache holds at most ~2 MiB.
    m = _JID.fullmatch(value)
    return m.group("kind") if m else None


def is_channel_jid(value: object) -> bool:
    """True for a JID of a messaging network (channels and their contacts), custom ones too."""
    kind = jid_kind(value)
    return kind is not None and kind not in NON_CHANNEL_KINDS


def jid_problem(value: object, field: str) -> str | None:
    """Why ``value`` is not a valid channel/contact JID for ``field``, or None when it is."""
    if not isinstance(value, str):
        return f"{field}: must be a JID string"
    m = _JID.fullmatch(value)
    if not m:
        return f"{field}: {value[:80]!r} is not a JID like 31611111111@whatsapp.eazy.im"
    kind = m.group("kind")
    if kind in NON_CHANNEL_KINDS:
        return f"{field}: {kind} JIDs are not channels or contacts"
    if kind in PHONE_KINDS and not _PHONE.fullmatch(m.group("local")):
        return f"{field}: {kind} ids are phone numbers without '+'"
    return None


def conversation_problem(channel_jid: object, contact_jid: object) -> str | None:
    """Why ``channel_jid``/``contact_jid`` cannot name one conversation, or None when they can."""
    problem = jid_problem(channel_jid, "channelJid") or jid_problem(contact_jid, "contactJid")
    if problem:
        return problem
    if jid_kind(channel_jid) != jid_kind(contact_jid):
        return "contactJid: must be on the same network as channelJid"
    if channel_jid == contact_jid:
        return "contactJid: must differ from channelJid"
    return None

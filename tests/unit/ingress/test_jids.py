"""JIDs are matched whole and admit no control characters (DESIGN.md, "Event records").

Covers issue 9 item 4 and issue 15 item 8 (the JID half): one module
(bridge/contract/jids.py) decides for ingress, egress validation and the simulator alike.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.contract.jids import conversation_problem, is_channel_jid, jid_kind, jid_problem

CHANNEL = "31612345678@whatsapp.eazy.im"
CONTACT = "31611111111@whatsapp.eazy.im"
CONTROLS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]


def test_valid_jids_still_pass() -> None:
    """The forms the reference shows keep passing."""
    assert jid_kind(CHANNEL) == "whatsapp"
    assert jid_problem(CHANNEL, "channelJid") is None
    assert conversation_problem(CHANNEL, CONTACT) is None
    assert jid_kind("5ea9a2bc@agent.eazy.im") == "agent"


def test_trailing_newline_is_not_a_jid() -> None:
    """``$`` matched before a final newline; a full match does not."""
    assert jid_kind(CHANNEL + "\n") is None
    assert not is_channel_jid(CONTACT + "\n")
    assert jid_problem(CHANNEL + "\n", "channelJid") is not None
    assert conversation_problem(CHANNEL, CONTACT + "\n") is not None


@given(
    control=st.sampled_from(CONTROLS),
    local=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="@/"),
        min_size=1,
        max_size=20,
    ),
    where=st.integers(min_value=0, max_value=20),
)
def test_control_characters_anywhere_in_the_local_part_are_refused(
    control: str, local: str, where: int
) -> None:
    """A control character (C0, DEL, C1, ANSI ESC) anywhere in the local part fails the match."""
    where = min(where, len(local))
    jid = f"{local[:where]}{control}{local[where:]}@apple.eazy.im"
    assert jid_kind(jid) is None
    assert jid_problem(jid, "contactJid") is not None


def test_ansi_escape_contact_is_refused_by_conversation_check() -> None:
    """Egress and the simulator share conversation_problem: an ESC sequence is refused."""
    assert conversation_problem("abc@apple.eazy.im", "x\x1b[31mred@apple.eazy.im") is not None

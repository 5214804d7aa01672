"""The webhook plan's text never shows a token, and the plan for a synced channel is empty."""

from __future__ import annotations

from typing import Any

from bridge.runtime.webhook_plan import WEBHOOK_EVENTS, plan_channel

URL = "https://bridge.example.com/webhooks"
NEW, OLD, STRANGER = "new-token-0123456789", "old-token-0123456789", "their-token-0123456789"
#: spotler/api-v3-reference.txt, "Webhooks" -> "Events".
REFERENCE_EVENTS = {
    "custom", "echo", "handover", "label", "message",
    "note", "postback", "receipt", "template_pack", "typing",
}  # fmt: skip


def test_every_reference_event() -> None:
    assert set(WEBHOOK_EVENTS) == REFERENCE_EVENTS


def test_no_token_in_the_plan_text() -> None:
    hooks: list[dict[str, Any]] = [
        {"id": "1", "url": URL, "events": ["message"], "enabled": False,
         "headers": {"authorization": f"Bearer {STRANGER}"}},
        {"id": "2", "url": "https://old.example.com/x", "events": ["receipt"],
         "headers": {"Authorization": f"Bearer {OLD}"}},
        {"id": "3", "url": "https://crm.example.com/x", "events": ["message"],
         "headers": {"Authorization": "Basic dXNlcjpwYXNz"}},
    ]  # fmt: skip
    plan = plan_channel("c@whatsapp.eazy.im", hooks, URL, [NEW, OLD], prune=True)
    text = "\n".join([*(s.text for s in plan.steps), *plan.notes])
    for secret in (NEW, OLD, STRANGER, "dXNlcjpwYXNz"):
        assert secret not in text
    assert [s.action for s in plan.steps] == ["update", "delete"]  # update first (issue 26)
    update = plan.steps[0]
    assert update.webhook_id == "1"
    assert update.body["headers"] == {"Authorization": f"Bearer {NEW}"}
    assert update.body["enabled"] is True


def test_a_synced_channel_has_an_empty_plan() -> None:
    hook = {
        "id": "1", "url": URL + "/", "events": sorted(REFERENCE_EVENTS), "enabled": True,
        "headers": {"Authorization": f"Bearer {NEW}"},
    }  # fmt: skip
    assert not plan_channel("c@whatsapp.eazy.im", [hook], URL, [NEW], prune=True).changes


def test_prune_updates_first_and_adds_the_events_of_extras_at_the_url_after_deleting_them() -> None:
    """Issue 26, item 10: the kept webhook is updated before any delete, so a failed update
    leaves every webhook there; events an extra at the same URL still takes (the platform
    refuses a second webhook for them, 1014) join the kept one after the delete."""
    others = sorted(REFERENCE_EVENTS - {"message"})
    hooks: list[dict[str, Any]] = [
        {"id": "1", "url": URL, "events": ["message"], "enabled": False,
         "headers": {"Authorization": f"Bearer {NEW}"}},
        {"id": "2", "url": URL, "events": others, "enabled": True,
         "headers": {"Authorization": f"Bearer {OLD}"}},
    ]  # fmt: skip
    plan = plan_channel("c@whatsapp.eazy.im", hooks, URL, [NEW, OLD], prune=True)
    assert [(s.action, s.webhook_id) for s in plan.steps] == [
        ("update", "1"), ("delete", "2"), ("update", "1"),
    ]  # fmt: skip
    assert plan.steps[0].body == {"enabled": True}
    assert set(plan.steps[2].body["events"]) == REFERENCE_EVENTS

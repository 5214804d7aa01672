"""The platform's rules as data, transcribed from the Spotler API v3 reference (pure, no I/O).

Owns what the simulator enforces, and nothing else decides it: it imports no bridge rule, so a
wrong guess in the bridge meets a rule written independently here. Each rule names the section
of the Spotler API v3 reference (by its heading) it comes from. Where the reference is silent,
the simulator's choice is listed in :data:`ASSUMPTIONS`, the one place assumptions are written
down, and the rule points at it by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Every choice the reference does not make for us. Keys are referenced by the rules below.
ASSUMPTIONS: Mapping[str, str] = {
    "receipt-status": (
        "The reference lists no receipt statuses and shows no receipt body. The simulator sends "
        '{"type": "receipt", ..., "message": {"id": <the id "Send messages" returned>, "status": '
        '...}} with the statuses "delivered" (reached the phone), "read" (opened; only after '
        'delivered in truth) and "failed" (never delivered; then nothing else). With the '
        "receipt plan (POST /_sim/receipts) they may arrive late, reversed, twice, and for ids "
        "the API never returned (bridge/simulator/receipts.py)."
    ),
    "status": (
        "The reference names no HTTP status per error code; CODE_STATUS pairs each code with "
        "the status its description suggests (1001 401, 1002 and 1010 403, 1009 404, 1014 409, "
        "1003 503, 1004 500, 1012 502; every other code 400)."
    ),
    "bearer": (
        "'Authentication' shows the key as 'Authorization: Bearer <key>' and says nothing of case "
        "or spacing; the simulator takes the scheme in any case (as RFC 7235 does) and the key "
        "after one or more spaces, with nothing else in the header."
    ),
    "scope-hierarchy": (
        "'Scopes' says assistant and company are each 'same as channel including' their own "
        "endpoints, and owner 'same as company including owner related endpoints'. Read "
        "literally: assistant grants channel+assistant, company grants channel+company. The "
        "reference is silent on whether owner reaches assistant endpoints; the simulator lets "
        "owner, the widest scope, reach every label."
    ),
    "objects": (
        "A key's objects (the channel JIDs of 'Read API keys') limit which channels it may use; "
        "a key configured without channels may use every channel (shown with empty objects)."
    ),
    "media": (
        "The reference does not say how media content is supplied. A send-message body may carry "
        'a top-level "media": {"url": "http(s)://..."} beside "message"; it is optional, and '
        "when present but malformed the answer is 1008 (Media is invalid)."
    ),
    "template-structure": (
        "The 'Template' message table says template is an 'array' (read as a PHP associative "
        'array, i.e. a JSON object) and shows no example. The simulator takes {"name", '
        '"language", "parameters": [...]} or {"name", "language", "components": [{"parameters": '
        "[...]}, ...]}; name and language are strings (as in 'Create a template')."
    ),
    "template-parameters": (
        "1013 (Parameter count mismatch) compares the parameters given with the {{n}} "
        "placeholders in the translation's component texts."
    ),
    "template-rejected": (
        "Sending a template whose translation is not APPROVED answers 1011 (Message rejected); "
        "an unknown name or language answers 1006."
    ),
    "interactive": (
        "'interactive' has no 'Messages' table, only the 'WhatsApp examples'; the simulator "
        'requires an "interactive" object and checks nothing inside it.'
    ),
    "conversation-values": (
        "'Update a conversation' lists the fields that can be updated and 'Use cases' their "
        "values: status OPEN/CLOSED (the two shown), assignee a string or null, labels an array "
        "of strings, unreadCount null or a non-negative integer, team a JID string or null "
        "(the reference shows team only in answers, as {jid}). Other fields are ignored."
    ),
    "webhook-url": (
        "The platform requires HTTPS; the simulator also takes http:// so local receivers work. "
        "Header names and values must be sendable HTTP headers. Registering a URL that already "
        "takes one of the same events on the channel is 1014 (it would double-deliver)."
    ),
    "not-implemented": (
        "Endpoints of the reference the simulator does not implement answer 501 with code 1004 "
        "in the reference's error format, so nobody mistakes them for a real 'not found'."
    ),
    "channels": (
        "'Read channels' lists the channels the key may use: the configured SIMULATOR_CHANNELS "
        "plus every channel a key names, each with the reference's example fields."
    ),
}

#: "Error codes": the documented codes and their descriptions.
ERROR_CODES: Mapping[int, str] = {
    1001: "Unauthorized",
    1002: "Access denied",
    1003: "Service unavailable",
    1004: "Internal server error",
    1005: "Validation error",
    1006: "Template name does not exist",
    1007: "User does not have WhatsApp",
    1008: "Media is invalid",
    1009: "Not found",
    1010: "Assistant has no ownership of conversation",
    1011: "Message rejected",
    1012: "Bad gateway",
    1013: "Parameter count mismatch",
    1014: "Already exists",
    1015: "Customer care window expired",
}
#: The HTTP status each code is answered with (ASSUMPTIONS["status"]).
CODE_STATUS: Mapping[int, int] = {
    1001: 401, 1002: 403, 1003: 503, 1004: 500, 1005: 400, 1006: 400, 1007: 400, 1008: 400,
    1009: 404, 1010: 403, 1011: 400, 1012: 502, 1013: 400, 1014: 409, 1015: 400,
}  # fmt: skip

# -- API keys ("API keys", "Scopes") -------------------------------------------------------------

SCOPES: tuple[str, ...] = ("channel", "assistant", "company", "owner")
#: Endpoint labels each scope reaches ("Scopes"; owner reaching assistant: "scope-hierarchy").
SCOPE_GRANTS: Mapping[str, frozenset[str]] = {
    "channel": frozenset({"channel"}),
    "assistant": frozenset({"channel", "assistant"}),
    "company": frozenset({"channel", "company"}),
    "owner": frozenset({"channel", "assistant", "company", "owner"}),
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint of the reference: its label is the scope shown beside the method."""

    name: str
    method: str
    path: str  # below /v3, with the reference's {placeholders}
    label: str
    section: str
    implemented: bool = False


#: Every endpoint of the reference, in the order aiohttp must try them (literal paths such as
#: ``/keys/current`` or ``/contacts/blacklist`` before the placeholder paths they shadow).
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("read_agents", "GET", "/companies/{companyId}/agents", "assistant", "Read agents"),
    Endpoint("read_agent", "GET", "/companies/{companyId}/agents/{email}", "assistant", "Read agents"),  # noqa: E501
    Endpoint("read_assistants", "GET", "/companies/{companyId}/assistants", "assistant", "Read assistants"),  # noqa: E501
    Endpoint("update_assistant", "PATCH", "/companies/{companyId}/assistants/{jid}", "assistant", "Update an assistant"),  # noqa: E501
    Endpoint("read_automated", "GET", "/channels/{channelJid}/automated-messages", "channel", "Read automated messages"),  # noqa: E501
    Endpoint("read_automated_one", "GET", "/channels/{channelJid}/automated-messages/{type}", "channel", "Read automated messages"),  # noqa: E501
    Endpoint("update_automated", "PATCH", "/channels/{channelJid}/automated-messages/{type}", "channel", "Update automated message"),  # noqa: E501
    Endpoint("read_blacklist", "GET", "/channels/{channelJid}/contacts/blacklist", "channel", "Read blacklist"),  # noqa: E501
    Endpoint("block_contact", "POST", "/channels/{channelJid}/contacts/blacklist/{contactJid}", "channel", "Block a contact"),  # noqa: E501
    Endpoint("unblock_contact", "DELETE", "/channels/{channelJid}/contacts/blacklist/{contactJid}", "channel", "Unblock a contact"),  # noqa: E501
    Endpoint("read_keys", "GET", "/keys", "company", "Read API keys", implemented=True),
    Endpoint("read_current_key", "GET", "/keys/current", "channel", "Read API keys", implemented=True),  # noqa: E501
    Endpoint("read_channels", "GET", "/channels", "channel", "Read channels", implemented=True),
    Endpoint("update_channel", "PATCH", "/channels/{channelJid}", "channel", "Update a channel"),
    Endpoint("create_comment", "POST", "/channels/{channelJid}/conversations/{contactJid}/comments", "assistant", "Create a comment"),  # noqa: E501
    Endpoint("read_current_company", "GET", "/companies/current", "channel", "Read companies"),
    Endpoint("read_companies", "GET", "/companies", "channel", "Read companies"),
    Endpoint("read_company", "GET", "/companies/{id}", "channel", "Read companies"),
    Endpoint("create_contact", "POST", "/channels/{channelJid}/contacts", "channel", "Create a contact"),  # noqa: E501
    Endpoint("read_contact", "GET", "/channels/{channelJid}/contacts/{contactJid}", "channel", "Read contact"),  # noqa: E501
    Endpoint("update_contact", "PATCH", "/channels/{channelJid}/contacts/{contactJid}", "channel", "Update a contact"),  # noqa: E501
    Endpoint("delete_contact", "DELETE", "/channels/{channelJid}/contacts/{contactJid}", "channel", "Delete a contact"),  # noqa: E501
    Endpoint("get_conversation", "GET", "/channels/{channelJid}/conversations/{contactJid}", "assistant", "Read conversation", implemented=True),  # noqa: E501
    Endpoint("patch_conversation", "PATCH", "/channels/{channelJid}/conversations/{contactJid}", "assistant", "Update a conversation", implemented=True),  # noqa: E501
    Endpoint("create_label", "POST", "/companies/{companyId}/labels", "assistant", "Create a label"),  # noqa: E501
    Endpoint("read_labels", "GET", "/companies/{companyId}/labels", "assistant", "Read labels"),
    Endpoint("update_label", "PATCH", "/companies/{companyId}/labels/{jid}", "assistant", "Update a label"),  # noqa: E501
    Endpoint("delete_label", "DELETE", "/companies/{companyId}/labels/{jid}", "assistant", "Delete a label"),  # noqa: E501
    Endpoint("read_lists", "GET", "/channels/{channelJid}/lists", "channel", "Read lists"),
    Endpoint("create_list", "POST", "/channels/{channelJid}/lists", "channel", "Create a list"),
    Endpoint("add_participant", "POST", "/channels/{channelJid}/lists/{listJid}/participants/{contactJid}", "channel", "Add contact to a list"),  # noqa: E501
    Endpoint("remove_participant", "DELETE", "/channels/{channelJid}/lists/{listJid}/participants/{contactJid}", "channel", "Remove contact from a list"),  # noqa: E501
    Endpoint("send_message", "POST", "/channels/{channelJid}/messages/{contactJid}", "channel", "Send messages", implemented=True),  # noqa: E501
    Endpoint("create_note", "POST", "/channels/{channelJid}/contacts/{contactJid}/notes", "assistant", "Create a note"),  # noqa: E501
    Endpoint("read_notes", "GET", "/channels/{channelJid}/contacts/{contactJid}/notes", "assistant", "Read notes"),  # noqa: E501
    Endpoint("update_note", "PATCH", "/channels/{channelJid}/contacts/{contactJid}/notes/{id}", "assistant", "Update a note"),  # noqa: E501
    Endpoint("delete_note", "DELETE", "/channels/{channelJid}/contacts/{contactJid}/notes/{id}", "assistant", "Delete a note"),  # noqa: E501
    Endpoint("read_profile", "GET", "/channels/{channelJid}/profile", "channel", "Read profile"),
    Endpoint("overwrite_profile", "POST", "/channels/{channelJid}/profile", "channel", "Update profile"),  # noqa: E501
    Endpoint("update_profile", "PATCH", "/channels/{channelJid}/profile", "channel", "Update profile"),  # noqa: E501
    Endpoint("create_team", "POST", "/companies/{companyId}/teams", "assistant", "Create a team"),
    Endpoint("read_teams", "GET", "/companies/{companyId}/teams", "assistant", "Read teams"),
    Endpoint("update_team", "PATCH", "/companies/{companyId}/teams/{jid}", "assistant", "Update a team"),  # noqa: E501
    Endpoint("delete_team", "DELETE", "/companies/{companyId}/teams/{jid}", "assistant", "Delete a team"),  # noqa: E501
    Endpoint("create_template", "POST", "/channels/{channelJid}/templates", "channel", "Create a template"),  # noqa: E501
    Endpoint("read_templates", "GET", "/channels/{channelJid}/templates", "channel", "Read templates", implemented=True),  # noqa: E501
    Endpoint("delete_template", "DELETE", "/channels/{channelJid}/templates/{name}", "assistant", "Delete a template"),  # noqa: E501
    Endpoint("create_webhook", "POST", "/channels/{channelJid}/webhooks", "channel", "Create a webhook", implemented=True),  # noqa: E501
    Endpoint("list_webhooks", "GET", "/channels/{channelJid}/webhooks", "channel", "Read webhooks", implemented=True),  # noqa: E501
    Endpoint("update_webhook", "PATCH", "/channels/{channelJid}/webhooks/{id}", "channel", "Update a webhook", implemented=True),  # noqa: E501
    Endpoint("delete_webhook", "DELETE", "/channels/{channelJid}/webhooks/{id}", "channel", "Delete a webhook", implemented=True),  # noqa: E501
)  # fmt: skip
ENDPOINTS_BY_NAME: Mapping[str, Endpoint] = {e.name: e for e in ENDPOINTS}

# -- Messages ("Messages" tables; "Send messages") -----------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageRule:
    """A message type: its mandatory fields and their JSON types (beside ``type`` itself)."""

    type: str
    mandatory: Mapping[str, str]  # field -> "string" | "number" | "array" | "object"
    section: str


#: The tables' "Value" column: string -> JSON string, float -> JSON number, array -> JSON array;
#: "template array" is an object (ASSUMPTIONS["template-structure"]), "interactive" has no table
#: (ASSUMPTIONS["interactive"]).
MESSAGE_RULES: Mapping[str, MessageRule] = {
    r.type: r
    for r in (
        MessageRule("audio", {"mimeType": "string"}, "Audio"),
        MessageRule("contact", {"contacts": "array"}, "Contact"),
        MessageRule(
            "document",
            {"fileName": "string", "mimeType": "string", "title": "string"},
            "Document",
        ),
        MessageRule("gif", {"mimeType": "string"}, "Gif"),
        MessageRule("image", {"mimeType": "string"}, "Image"),
        MessageRule("location", {"latitude": "number", "longitude": "number"}, "Location"),
        MessageRule("ptt", {"mimeType": "string"}, "Voice message"),
        MessageRule("sticker", {"mimeType": "string"}, "Sticker"),
        MessageRule("template", {"template": "object"}, "Template"),
        MessageRule("text", {"body": "string"}, "Text"),
        MessageRule("video", {"mimeType": "string"}, "Video"),
        MessageRule("interactive", {"interactive": "object"}, "WhatsApp examples"),
    )
}

#: Message types whose content is a file: those whose table makes mimeType mandatory.
MEDIA_TYPES: frozenset[str] = frozenset(
    name for name, rule in MESSAGE_RULES.items() if "mimeType" in rule.mandatory
)

# -- Conversations ("Read conversation", "Update a conversation", "Use cases") -------------------

#: "The following fields can be updated: assignee, labels, status, team, unreadCount".
CONVERSATION_FIELDS: tuple[str, ...] = ("assignee", "labels", "status", "team", "unreadCount")
#: The statuses the reference shows ("Read conversation" OPEN, "Use cases" CLOSED).
CONVERSATION_STATUSES: tuple[str, ...] = ("OPEN", "CLOSED")

# -- Webhooks ("Webhooks", "Events", "Create a webhook", "Update a webhook") ---------------------

#: "Events": the ten documented webhook events.
WEBHOOK_EVENTS: tuple[str, ...] = (
    "custom", "echo", "handover", "label", "message",
    "note", "postback", "receipt", "template_pack", "typing",
)  # fmt: skip
#: "Update a webhook": "The following fields can be updated: enabled, events, headers, url".
WEBHOOK_FIELDS: tuple[str, ...] = ("enabled", "events", "headers", "url")
#: "Create a webhook": its example body names the events and the url.
WEBHOOK_CREATE_MANDATORY: tuple[str, ...] = ("events", "url")

# -- Templates ("Read templates") -----------------------------------------------------------------

TEMPLATE_STATUSES: tuple[str, ...] = ("APPROVED", "REJECTED")
TEMPLATE_NAMESPACE = "e08e69cb_d136_86fc_c33f_0f64becd1f46"


def _translation(
    locale: str, text: str, status: str, reason: str | None = None
) -> dict[str, object]:
    entry: dict[str, object] = {
        "components": [{"text": text, "type": "BODY"}],
        "localeName": locale,
        "status": status,
    }
    if reason is not None:
        entry["rejectedReason"] = reason
    return entry


def default_templates() -> list[dict[str, object]]:
    """The templates every channel starts with, fresh each call: the "Read templates" example
    (``hello`` is REJECTED) and ``support_after_24hours`` from "Create a template", taken as
    APPROVED so a one-parameter template can be sent."""
    delivered = "Hello {{1}}, your order with reference {{2}} has been delivered."
    afgeleverd = "Hallo {{1}}, je bestelling met nummer {{2}} is afgeleverd."
    return [
        {
            "category": "TRANSACTIONAL",
            "name": "delivery_notification",
            "translations": [
                _translation("en", delivered, "APPROVED"),
                _translation("nl", afgeleverd, "APPROVED", "NONE"),
            ],
        },
        {
            "category": "TRANSACTIONAL",
            "name": "hello",
            "translations": [_translation("en", "Hello {{1}}", "REJECTED", "PROMOTIONAL")],
        },
        {
            "category": "TRANSACTIONAL",
            "name": "support_after_24hours",
            "translations": [_translation("en", "Hello {{1}}, how can I help you?", "APPROVED")],
        },
    ]

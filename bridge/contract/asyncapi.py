"""The AsyncAPI 3.0 document of the bridge's topics, built from the JSON Schemas and the catalog.

Pure core. docs/asyncapi.yaml is this module's output (``bridge contract asyncapi``); a test
fails when the committed file differs, so the document and the schemas cannot drift. The
schemas are embedded with their ``$defs`` moved to ``components/schemas`` (``<schema>.<def>``),
since a ``$ref`` inside the document resolves against the document's root.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bridge.contract.catalog import SCHEMA_NAMES, TOPICS, Topic, load_schema
from bridge.contract.records import CLOUDEVENTS_CONTENT_TYPE

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
_CLOUDEVENTS = CLOUDEVENTS_CONTENT_TYPE.decode()


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _embed(name: str, schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``schema`` and its ``$defs`` as entries of ``components/schemas``, references rewritten."""
    text = json.dumps(schema)
    text = text.replace('"#/$defs/', f'"#/components/schemas/{name}.').replace(
        '"#"', f'"#/components/schemas/{name}"'
    )
    doc = json.loads(text)
    doc.pop("$schema", None)
    schema_id = doc.pop("$id")
    doc.pop("examples", None)  # the messages carry them, as AsyncAPI examples
    defs = doc.pop("$defs", {})
    doc["description"] = f"{doc['description']} JSON Schema 2020-12: {schema_id}"
    out = {name: doc}
    out.update({f"{name}.{key}": value for key, value in defs.items()})
    return out


def _headers(spec: Topic) -> dict[str, Any]:
    if spec.types:
        return {
            "type": "object",
            "required": ["content-type"],
            "properties": {
                "content-type": {
                    "const": _CLOUDEVENTS,
                    "description": "CloudEvents JSON structured mode",
                }
            },
        }
    return {
        "type": "object",
        "description": "No header is required; the bridge reads the value alone.",
    }


def _payload(spec: Topic) -> dict[str, Any]:
    ref = _schema_ref(spec.schema)
    if spec.schema != "event":
        return ref
    return {"allOf": [ref, {"properties": {"type": {"const": spec.types[0]}}}]}


def _examples(spec: Topic, examples: list[Any]) -> list[dict[str, Any]]:
    chosen = [e for e in examples if not spec.types or e.get("type") in spec.types]
    out = []
    for i, example in enumerate(chosen):
        entry: dict[str, Any] = {"name": f"{spec.channel_id}-{i + 1}", "payload": example}
        if spec.types:
            entry["headers"] = {"content-type": _CLOUDEVENTS}
        out.append(entry)
    return out


def _message(spec: Topic, examples: list[Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": spec.channel_id,
        "title": spec.summary,
        "contentType": _CLOUDEVENTS if spec.types else "application/json",
        "headers": _headers(spec),
        "payload": _payload(spec),
        "bindings": {
            "kafka": {
                "key": (
                    {"type": "null", "description": "no key"}
                    if spec.key == "none"
                    else {"type": "string", "description": spec.key}
                ),
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    found = _examples(spec, examples)
    if found:
        message["examples"] = found
    return message


def _channel(spec: Topic) -> dict[str, Any]:
    return {
        "address": "{prefix}." + spec.suffix,
        "title": spec.suffix,
        "description": f"{spec.summary}. Key: {spec.key}. Written by {spec.publisher}; read by "
        f"{spec.subscriber}.",
        "parameters": {"prefix": {"$ref": "#/components/parameters/prefix"}},
        "messages": {spec.channel_id: {"$ref": f"#/components/messages/{spec.channel_id}"}},
        "bindings": {
            "kafka": {
                "partitions": 6,
                "replicas": 3,
                "topicConfiguration": {
                    "cleanup.policy": ["compact"] if spec.compacted else ["delete"]
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _operations(spec: Topic) -> dict[str, Any]:
    channel = {"$ref": f"#/channels/{spec.channel_id}"}
    messages = [{"$ref": f"#/channels/{spec.channel_id}/messages/{spec.channel_id}"}]
    send = {
        "action": "send",
        "channel": channel,
        "title": f"{spec.publisher} write {spec.suffix}",
        "summary": f"Written by {spec.publisher}",
        "messages": messages,
    }
    receive: dict[str, Any] = {
        "action": "receive",
        "channel": channel,
        "title": f"{spec.subscriber} read {spec.suffix}",
        "summary": f"Read by {spec.subscriber}",
        "messages": messages,
    }
    if spec.group is not None:
        setting, default = spec.group
        receive["bindings"] = {
            "kafka": {
                "groupId": {
                    "type": "string",
                    "default": default,
                    "description": setting,
                },
                "bindingVersion": KAFKA_BINDING,
            }
        }
    return {f"write-{spec.channel_id}": send, f"read-{spec.channel_id}": receive}


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as data."""
    schemas: dict[str, Any] = {}
    examples: dict[str, list[Any]] = {}
    for name in SCHEMA_NAMES:
        schema = load_schema(name)
        examples[name] = schema.get("examples", [])
        schemas.update(_embed(name, schema))
    operations: dict[str, Any] = {}
    for spec in TOPICS:
        operations.update(_operations(spec))
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "spotler-bridge",
            "version": "1.0.0",
            "description": "The Kafka topics of spotler-bridge: webhook events of the Spotler "
            "Message platform (API v3) as CloudEvents, commands to it, and their results. "
            "Generated by `bridge contract asyncapi` from the JSON Schemas in "
            "bridge/contract/schemas (docs/contract.md); do not edit by hand.",
        },
        "defaultContentType": _CLOUDEVENTS,
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "BRIDGE_KAFKA_BOOTSTRAP_SERVERS (SASL_SSL for managed Kafka)",
            }
        },
        "channels": {spec.channel_id: _channel(spec) for spec in TOPICS},
        "operations": operations,
        "components": {
            "parameters": {
                "prefix": {
                    "default": "spotler",
                    "description": "BRIDGE_TOPIC_PREFIX",
                }
            },
            "messages": {spec.channel_id: _message(spec, examples[spec.schema]) for spec in TOPICS},
            "schemas": schemas,
        },
    }


# --- a small YAML writer for JSON data (the runtime has no YAML library) --------------------
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_.$-]*")


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _scalar(value: Any) -> str:
    # JSON scalars are YAML 1.2 flow scalars: strings double-quoted with JSON escapes.
    return json.dumps(value, ensure_ascii=False)


def _lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        out = []
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                out.append(f"{pad}{_key(k)}:")
                out.extend(_lines(v, indent + 1))
            else:
                out.append(f"{pad}{_key(k)}: {_inline(v)}")
        return out
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = _lines(item, indent + 1)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out.extend(nested[1:])
            else:
                out.append(f"{pad}- {_inline(item)}")
        return out
    return [pad + _scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(doc: Any) -> str:
    return "\n".join(_lines(doc, 0)) + "\n"


def asyncapi_yaml() -> str:
    """docs/asyncapi.yaml's text."""
    header = (
        "# Generated by `bridge contract asyncapi` (bridge/contract/asyncapi.py): do not edit.\n"
    )
    return header + to_yaml(document())

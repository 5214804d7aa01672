"""Every command and record example in README.md and docs/ is valid under its topic's schema:
the JSON in ```json blocks (commands and CloudEvents; webhook bodies are the platform's, not
the bridge's, and are left alone) and the commands piped to ``bridge produce``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.contract import catalog
from tests.contract_check import problems

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_JSON_BLOCK = re.compile(r"^```json\n(.*?)^```", re.M | re.S)
_PRODUCE = re.compile(r"echo '(\{.*?\})'[^\n]*(?:\n[^\n]*?)??bridge produce (\S+)", re.S)


def _values(text: str) -> list[Any]:
    decoder, out, i = json.JSONDecoder(), list[Any](), 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        value, i = decoder.raw_decode(text, i)
        out.append(value)


def _topic_of(doc: Any) -> str | None:
    """The topic suffix an example belongs on; None for a webhook body (the platform's)."""
    if not isinstance(doc, dict):
        raise AssertionError(f"example is not an object: {doc!r}")
    kind = doc.get("type")
    if "specversion" in doc and isinstance(kind, str) and kind.startswith("im.eazy."):
        return next(t.suffix for t in catalog.TOPICS if kind in t.types)
    command = doc.get("data", doc) if "specversion" in doc else doc
    if isinstance(command, dict) and "channelJid" in command and "id" in doc:
        return "commands.update-conversation" if "changes" in command else "commands.send-message"
    if isinstance(kind, str) and "specversion" not in doc:
        return None
    raise AssertionError(f"an example that is neither a command, a record nor a webhook: {doc}")


def _examples() -> list[tuple[str, str, Any]]:
    found: list[tuple[str, str, Any]] = []
    for path in DOCS:
        text = path.read_text()
        name = path.relative_to(ROOT).as_posix()
        for block in _JSON_BLOCK.findall(text):
            for doc in _values(block):
                suffix = _topic_of(doc)
                if suffix is not None:
                    found.append((name, suffix, doc))
        for raw, topic in _PRODUCE.findall(text):  # a topic, or a command kind (README)
            spec = catalog.find_topic(topic) or catalog.find_topic(f"P.commands.{topic}")
            assert spec is not None, f"{name}: bridge produce {topic}: not a topic of the bridge"
            found.append((name, spec.suffix, json.loads(raw)))
    return found


EXAMPLES = _examples()


def test_the_docs_have_command_examples() -> None:
    suffixes = {suffix for _, suffix, _ in EXAMPLES}
    assert {"commands.send-message", "commands.update-conversation"} <= suffixes


@pytest.mark.parametrize(("where", "suffix", "doc"), EXAMPLES)
def test_doc_example_is_valid(where: str, suffix: str, doc: Any) -> None:
    spec = next(t for t in catalog.TOPICS if t.suffix == suffix)
    assert problems(spec, doc) == [], f"{where}: example for {suffix} is invalid"

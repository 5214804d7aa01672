"""Backward compatibility of a JSON Schema, the way a schema registry checks it.

:func:`breaking_changes` walks a released schema and its current version side by side and names
every change that breaks existing consumers or producers (docs/contract.md, "Versions"): a field
removed, a field made required, a type, enum, const, limit, pattern or format narrowed,
additional properties forbidden, a subschema added to ``allOf`` or dropped from ``anyOf``/``oneOf``.
Descriptions, titles and examples are free to change.
"""

from __future__ import annotations

from typing import Any

_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_EXACT = ("pattern", "format", "$ref", "if", "not", "contains", "propertyNames")
_ANY = object()


def _types(schema: dict[str, Any]) -> set[str] | object:
    kind = schema.get("type")
    if kind is None:
        return _ANY
    return {kind} if isinstance(kind, str) else set(kind)


def breaking_changes(old: Any, new: Any, path: str = "$") -> list[str]:
    """Every breaking difference between ``old`` (released) and ``new`` (current)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new or new is True else [f"{path}: schema changed from {old!r}"]
    found: list[str] = []
    old_types, new_types = _types(old), _types(new)
    if new_types is not _ANY and (old_types is _ANY or not old_types <= new_types):  # type: ignore[operator]
        found.append(f"{path}: type narrowed from {old.get('type', 'any')} to {new['type']}")
    if "enum" in new and not set(map(repr, old.get("enum", [_ANY]))) <= set(map(repr, new["enum"])):
        found.append(f"{path}: enum narrowed to {new['enum']}")
    if "const" in new and old.get("const", _ANY) != new["const"]:
        found.append(f"{path}: const {new['const']!r} where {old.get('const', 'anything')!r} was")
    found += [
        f"{path}: {key} raised to {new[key]}"
        for key in _LOWER
        if key in new and (key not in old or new[key] > old[key])
    ]
    found += [
        f"{path}: {key} lowered to {new[key]}"
        for key in _UPPER
        if key in new and (key not in old or new[key] < old[key])
    ]
    found += [
        f"{path}: {key} changed to {new[key]!r}"
        for key in _EXACT
        if key in new and old.get(key) != new[key]
    ]
    if new.get("uniqueItems") and not old.get("uniqueItems"):
        found.append(f"{path}: uniqueItems added")
    found += [
        f"{path}.{name}: made required"
        for name in sorted(set(new.get("required", [])) - set(old.get("required", [])))
    ]
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, schema in old_props.items():
        if name not in new_props:
            found.append(f"{path}.{name}: removed")
        else:
            found += breaking_changes(schema, new_props[name], f"{path}.{name}")
    if "additionalProperties" in new:
        found += breaking_changes(
            old.get("additionalProperties", True),
            new["additionalProperties"],
            f"{path}.(additionalProperties)",
        )
    for key in ("items", "then", "else"):
        if key in new:
            found += breaking_changes(old.get(key, True), new[key], f"{path}.({key})")
    for name, schema in old.get("$defs", {}).items():
        if name not in new.get("$defs", {}):
            found.append(f"{path}.$defs.{name}: removed")
        else:
            found += breaking_changes(schema, new["$defs"][name], f"{path}.$defs.{name}")
    found += _combinators(old, new, path)
    return found


def _combinators(old: dict[str, Any], new: dict[str, Any], path: str) -> list[str]:
    found: list[str] = []
    old_all, new_all = old.get("allOf", []), new.get("allOf", [])
    if len(new_all) > len(old_all):
        found.append(f"{path}.allOf: {len(new_all) - len(old_all)} constraint(s) added")
    for key in ("anyOf", "oneOf"):
        if key in new and len(new[key]) < len(old.get(key, [])):
            found.append(f"{path}.{key}: alternatives removed")
        if key in new and key not in old:
            found.append(f"{path}.{key}: added")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, (a, b) in enumerate(zip(old.get(key, []), new.get(key, []), strict=False)):
            found += breaking_changes(a, b, f"{path}.{key}[{i}]")
    return found

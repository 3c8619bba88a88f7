"""Structured answers: a deterministic tool call or JSON object that validates against a schema.

The dialects read what a request offers into the neutral `SimRequest` (`tools`, each
`{"name", "parameters"}`; `tool_choice`; `json_schema`, the schema itself); `answer_for` then
decides what the simulator answers:

- a tool call, when tools are offered and `tool_choice` is "required" (the first tool the
  prompt names, else the first tool) or names a tool, or when it is "auto" (or unset) and the
  prompt names a tool: the first one it names, in the order the tools were offered;
- a JSON object fitting `json_schema`, for a JSON-schema request (or "any JSON object" mode);
- text, as for any other request (`tool_choice` "none" included).

Values are drawn from a generator seeded by (seed, prompt, tool): the same request is answered
the same. Schemas: `type` (a list of types too; Gemini's upper-case names), `enum`, `const`,
objects (`properties`, `required`: every required property and about half the others),
strings (`minLength`/`maxLength`, a few `format`s; a `pattern` is not followed), integers and
numbers (`minimum`/`maximum`, exclusive bounds), booleans, null, arrays (`items`,
`minItems`/`maxItems`), `anyOf`/`oneOf` (the first choice), `allOf` (merged), and local
`$ref`s (`#/$defs/...`, as pydantic writes them). A structured answer is never cut by
`max_tokens`: the point of it is to validate.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

import orjson

from llmgather.sim.text import Answer, ToolUse, generate

__all__ = ["JSON_OBJECT", "answer_for", "value_for"]

# What a request asking for "any JSON object" (OpenAI's json_object mode, Gemini's JSON mime
# type without a schema) is answered with.
JSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}
_WORDS = (
    "river cloud signal light garden system answer pattern network birds season journey "
    "memory ocean mountain engine theory simple careful quiet bright early later"
).split()
_FORMATS = {
    "date": "2024-05-17",
    "date-time": "2024-05-17T09:30:00Z",
    "time": "09:30:00",
    "email": "someone@example.com",
    "uri": "https://example.com/item",
    "url": "https://example.com/item",
    "uuid": "3f1c2a9e-8d4b-4c1a-9f6e-2b7d5c8a1e04",
}
_MAX_DEPTH = 12  # a recursive schema ($ref to itself) ends here with the smallest value
_SPAN = 1000  # how far an unbounded number may go


def answer_for(
    prompt: str,
    seed: int,
    max_tokens: int | None,
    tools: list[dict[str, Any]] | None,
    tool_choice: str | dict[str, str] | None,
    json_schema: dict[str, Any] | None,
) -> Answer:
    """What the simulator answers (see the module docstring)."""
    tool = _chosen_tool(prompt, tools or [], tool_choice)
    if tool is not None:
        schema = tool.get("parameters") or {"type": "object"}
        arguments = value_for(schema, _rng(seed, prompt, tool["name"]))
        if not isinstance(arguments, dict):
            arguments = {}  # tool arguments are an object, whatever the schema said
        return Answer((), False, calls=(ToolUse(tool["name"], arguments),))
    if json_schema is not None:
        value = value_for(json_schema, _rng(seed, prompt, ""))
        return Answer((), False, json=orjson.dumps(value).decode())
    return generate(prompt, seed, max_tokens)


def _chosen_tool(
    prompt: str, tools: list[dict[str, Any]], choice: str | dict[str, str] | None
) -> dict[str, Any] | None:
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        return next((t for t in tools if t["name"] == choice.get("name")), None)
    named = next((t for t in tools if t["name"] in prompt), None)
    if named is None and choice == "required":
        return tools[0]
    return named


def _rng(seed: int, prompt: str, tool: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{prompt}\x00{tool}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def value_for(schema: Any, rng: random.Random) -> Any:
    """A JSON value that validates against `schema` (within the subset the docstring names)."""
    return _Generator(schema, rng).value(schema, 0)


class _Generator:
    def __init__(self, root: Any, rng: random.Random) -> None:
        self._root = root
        self._rng = rng

    def value(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, dict):
            return None if schema is False else {}  # `true` (or junk): anything goes
        schema = self._resolved(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            choices = schema.get(key)
            if isinstance(choices, list) and choices:
                return self.value({**_without(schema, key), **choices[0]}, depth + 1)
        kind = _type_of(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema)

    def _resolved(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        """The schema with a local `$ref` followed and `allOf` merged in."""
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/") and depth < _MAX_DEPTH:
            target: Any = self._root
            for step in ref[2:].split("/"):
                target = target.get(step, {}) if isinstance(target, dict) else {}
            schema = {**_without(schema, "$ref"), **(target if isinstance(target, dict) else {})}
            return self._resolved(schema, depth + 1)
        parts = schema.get("allOf")
        if isinstance(parts, list):
            merged = _without(schema, "allOf")
            for part in parts:
                if isinstance(part, dict):
                    part = self._resolved(part, depth + 1)
                    props = {**merged.get("properties", {}), **part.get("properties", {})}
                    required = [*merged.get("required", []), *part.get("required", [])]
                    merged = {**merged, **part, "properties": props, "required": required}
            return merged
        return schema

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        required = set(schema.get("required") or ())
        result: dict[str, Any] = {}
        for name, sub in properties.items():
            if name in required or (depth < _MAX_DEPTH and self._rng.random() < 0.5):
                result[name] = self.value(sub, depth + 1)
        for name in required - result.keys():  # required but not described: any string
            result[name] = self._string({})
        return result

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low = _int(schema.get("minItems"), 0)
        high = _int(schema.get("maxItems"), low + 3)
        count = low if depth >= _MAX_DEPTH else self._rng.randint(low, max(low, min(high, low + 3)))
        items = schema.get("items", {})
        values: list[Any] = []
        for _ in range(count):
            value = self.value(items, depth + 1)
            if schema.get("uniqueItems") and value in values:
                continue  # best effort: fewer items rather than duplicates
            values.append(value)
        return values

    def _integer(self, schema: dict[str, Any]) -> int:
        low, high = _bounds(schema)
        # The smallest and largest integers inside the bounds, exclusive ones kept out.
        low_i = math.floor(low) + 1 if _excludes(schema, "Minimum", low) else math.ceil(low)
        high_i = math.ceil(high) - 1 if _excludes(schema, "Maximum", high) else math.floor(high)
        return self._rng.randint(low_i, max(low_i, high_i))

    def _number(self, schema: dict[str, Any]) -> float:
        low, high = _bounds(schema)
        value = round(self._rng.uniform(low, high), 2)
        inside = (low < value if _excludes(schema, "Minimum", low) else low <= value) and (
            value < high if _excludes(schema, "Maximum", high) else value <= high
        )
        # Rounding may step over an edge: the middle is always inside.
        return value if inside else (low + high) / 2

    def _string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        low = _int(schema.get("minLength"), 0)
        high = _int(schema.get("maxLength"), max(low, 40))
        if fmt in _FORMATS and low <= len(_FORMATS[fmt]) <= high:
            return _FORMATS[fmt]
        text = " ".join(self._rng.choice(_WORDS) for _ in range(self._rng.randint(1, 3)))
        while len(text) < low:
            text += " " + self._rng.choice(_WORDS)
        return text[:high]


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first that is not null
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()  # Gemini's OpenAPI schemas say "OBJECT", "STRING"…
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _bounds(schema: dict[str, Any]) -> tuple[float, float]:
    """The tightest (low, high) the inclusive and exclusive bounds allow; a missing side is
    _SPAN away from the other."""
    lows = [_number(schema.get(k)) for k in ("minimum", "exclusiveMinimum")]
    highs = [_number(schema.get(k)) for k in ("maximum", "exclusiveMaximum")]
    low = max((v for v in lows if v is not None), default=None)
    high = min((v for v in highs if v is not None), default=None)
    if low is None and high is None:
        return 0.0, float(_SPAN)
    if low is None:
        assert high is not None
        return high - _SPAN, high
    if high is None:
        return low, low + _SPAN
    return low, high


def _excludes(schema: dict[str, Any], side: str, edge: float) -> bool:
    """Whether `edge` is an exclusive bound (a number, or draft 4's `true` beside the inclusive
    one)."""
    exclusive = schema.get("exclusive" + side)
    if exclusive is True:
        return True
    return _number(exclusive) == edge


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}

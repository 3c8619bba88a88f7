"""Tools and structured output in llmgather's one spelling: what `bind_tools` binds and the
runnable `with_structured_output` returns."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

from llmgather._errors import InvalidInputError

METHODS = ("function_calling", "json_schema", "json_mode")


def tool_spec(tool: Any) -> dict[str, Any]:
    """A LangChain tool (a BaseTool, a function, a pydantic model, a TypedDict, a schema dict)
    as llmgather's `{"name", "description", "parameters"}`."""
    function = convert_to_openai_tool(tool)["function"]
    spec = {"name": function["name"], "parameters": function.get("parameters") or {}}
    if function.get("description"):
        spec["description"] = function["description"]
    spec["parameters"].setdefault("type", "object")
    return spec


def tool_choice_value(choice: Any, tools: Sequence[dict[str, Any]]) -> str | dict[str, str] | None:
    """LangChain's tool_choice ("any", True, a tool's name, OpenAI's dict) as llmgather's."""
    if choice is None or choice == "auto":
        return None if choice is None else "auto"
    if choice in ("any", "required") or choice is True:
        return "required"
    if choice == "none":
        return "none"
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name") or choice.get("name")
    if isinstance(choice, str) and any(tool["name"] == choice for tool in tools):
        return {"name": choice}
    raise InvalidInputError(
        f'tool_choice must be "auto", "any", "none" or the name of a bound tool, got {choice!r}'
    )


def structured(
    model: Runnable[LanguageModelInput, Any],
    schema: Any,
    *,
    method: str,
    include_raw: bool,
) -> Runnable[LanguageModelInput, Any]:
    """The model asked for `schema`-shaped answers, and the parser that reads them back."""
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if schema is None and method != "json_mode":
        raise InvalidInputError(f"method {method!r} needs a schema; json_mode takes none")
    pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    # What LangChain's tracing shows of the request (BaseChatModel takes it out before the call).
    traced = {"kwargs": {"method": method}, "schema": schema and convert_to_openai_tool(schema)}
    model = model.bind(ls_structured_output_format=traced)
    parser: Runnable[Any, Any]
    if method == "function_calling":
        spec = tool_spec(schema)
        bound = model.bind(tools=[spec], tool_choice={"name": spec["name"]})
        if pydantic:
            parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
        else:
            parser = JsonOutputKeyToolsParser(key_name=spec["name"], first_tool_only=True)
    else:
        if method == "json_mode":
            answer = {"name": "response", "schema": {"type": "object"}}
        else:
            spec = tool_spec(schema)
            answer = {"name": spec["name"], "schema": spec["parameters"]}
        bound = model.bind(json_schema=answer)
        parser = (
            PydanticOutputParser(pydantic_object=schema)
            if pydantic and method == "json_schema"
            else JsonOutputParser()
        )
    if not include_raw:
        return bound | parser
    parsed = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")

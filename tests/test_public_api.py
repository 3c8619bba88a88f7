"""The public API: `llmgather.__all__` is curated, and every exception is in the one tree."""

from __future__ import annotations

import ast
import importlib
import importlib.resources
import importlib.util
import inspect
import pkgutil
import re
from collections.abc import Iterator
from types import ModuleType

import llmgather
from llmgather import LLMGatherError

PUBLIC = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhaustedError",
    "ChangedItemsError",
    "Client",
    "Completion",
    "ConfigurationError",
    "ConnectError",
    "ContextLengthError",
    "Cost",
    "DuplicateIdError",
    "EngineStats",
    "ErrorInfo",
    "InputChangedError",
    "InvalidInputError",
    "JobBusyError",
    "JobError",
    "JobMismatchError",
    "LLMGatherError",
    "Limiter",
    "LimiterStats",
    "Limits",
    "LocalLimiter",
    "MalformedResponseError",
    "NotFoundError",
    "OutputExistsError",
    "OverloadedError",
    "PermanentError",
    "PermissionDeniedError",
    "Permit",
    "PriceFile",
    "Prices",
    "QuotaExhaustedError",
    "RateLimitError",
    "RedisLimiter",
    "RedisUnavailableError",
    "Request",
    "RequestTimeoutError",
    "Result",
    "RetryPolicy",
    "ServerError",
    "StrictInputError",
    "Timeouts",
    "ToolCall",
    "TransientError",
    "TruncatedStreamError",
    "Usage",
    "__version__",
    "run_job",
]

# Exceptions that never leave the code that raises them, so they are no part of the tree:
# each is caught where it is raised and turned into something else.
INTERNAL = {
    # a bad input line, caught by its reader and turned into an `invalid_input` item
    "llmgather.jobs.inputs.item.LineError",
    # a request the simulator cannot parse, caught by its handler and answered with a 400
    "llmgather.sim.dialects.base.BadRequest",
    # the service's own signals, each caught by its route and answered in the client's dialect
    "llmgather.service.queueing.QueueFull",  # a 429 with Retry-After
    "llmgather.service.queueing.ClientGone",  # no answer: the client left
    "llmgather.service.dialects.base.Untranslatable",  # a 400 naming the field
    "llmgather.service.job_records.InvalidJobInput",  # a 400
    "llmgather.service.job_manager.ServiceStopping",  # a 503
    "llmgather.service.job_manager.NotCancellable",  # a 409: the job has ended
    "llmgather.service.errors.InvalidParam",  # a 422 naming the field or parameter
    "llmgather.service.routes.bodies.BodyTooLarge",  # a 413
    "llmgather.service.routes.bodies.NotAnObject",  # a 400 saying what the body is instead
    # a user's callable's own exception, carried to the engine and raised again as it was
    "llmgather._attempt.CallerFailure",
    # a gateway the benchmark could not start: its row says why, the others go on
    "llmgather.bench._servers.GatewayUnavailable",
    # the default transport's own signals, each caught within it and never raised past it:
    # a connection closed unanswered (resent once, else an APIConnectionError) and a corrupt
    # compressed body (an APIConnectionError)
    "llmgather.transport.http11.connection.Unanswered",
    "llmgather.transport.http11.decoding.DecodeError",
}


def test_all_is_the_curated_sorted_list() -> None:
    assert llmgather.__all__ == PUBLIC
    assert PUBLIC == sorted(PUBLIC)


def test_every_public_name_is_importable() -> None:
    for name in llmgather.__all__:
        assert getattr(llmgather, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from llmgather import *", namespace)
    assert set(PUBLIC) - {"__version__"} <= set(namespace)


def _modules() -> Iterator[tuple[str, ModuleType | None]]:
    """Every module of the package, imported; None for one an uninstalled extra needs."""
    for info in pkgutil.walk_packages(llmgather.__path__, "llmgather."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # importing it runs the command
        try:
            yield info.name, importlib.import_module(info.name)
        except ModuleNotFoundError as error:
            if (error.name or "").startswith("llmgather"):
                raise
            yield info.name, None


def test_every_exception_is_in_the_tree_and_exported() -> None:
    outside, unexported = set(), set()
    for name, module in _modules():
        if module is None:
            assert not _exception_classes_in_source(name), name
            continue
        for value in vars(module).values():
            if not (inspect.isclass(value) and issubclass(value, BaseException)):
                continue
            if value.__module__ != name:
                continue  # imported, not defined here
            if not issubclass(value, LLMGatherError):
                outside.add(f"{name}.{value.__qualname__}")
            elif getattr(llmgather, value.__name__, None) is not value:
                unexported.add(value.__name__)
    assert outside == INTERNAL
    assert unexported == set()


def test_the_tree_in_the_docstring_is_the_tree() -> None:
    from llmgather import _errors

    drawn = _drawn_tree(_errors.__doc__ or "")
    real = {
        value.__name__: value.__mro__[1].__name__
        for value in vars(_errors).values()
        if inspect.isclass(value) and issubclass(value, LLMGatherError)
    }
    assert drawn == real


def _drawn_tree(doc: str) -> dict[str, str]:
    """Each class drawn in the docstring's tree, with the class it is drawn under."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (column, name) of the open branches
    for line in doc.splitlines():
        match = re.match(r"^(\s*(?:[│ ]*[├└]── )?)(\w+Error)\b", line)
        if match is None:
            continue
        column, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[name] = stack[-1][1] if stack else "Exception"
        stack.append((column, name))
    return parents


def _exception_classes_in_source(module_name: str) -> list[str]:
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(base).endswith(("Error", "Exception")) for base in node.bases)
    ]


def test_the_package_says_it_is_typed() -> None:
    # PEP 561: without the marker, type checkers in users' projects ignore every annotation.
    assert importlib.resources.files("llmgather").joinpath("py.typed").is_file()

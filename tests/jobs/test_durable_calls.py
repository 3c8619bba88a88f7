"""Durable runs of any async callable (`llmgather.run_job`): one committed result per input,
resumed after a kill without calling the finished items again."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI

import llmgather
from llmgather import Cost, JobMismatchError, Limits, LocalLimiter, Permit, Usage
from llmgather.jobs.calls import callable_name
from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import cli_env, read_jsonl

CONCURRENCY = 8


def write_objects(path: Path, n: int) -> Path:
    lines = [orjson.dumps({"id": f"d{i}", "text": f"Document number {i}."}) for i in range(n)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def test_an_sdk_call_over_every_line_gives_one_ok_line_each_and_a_rerun_sends_nothing(
    tmp_path: Path,
) -> None:
    n = 200
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(
        b"\n".join(
            orjson.dumps(
                {
                    "id": f"d{i}",
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"Summarise document {i}."}],
                    "max_tokens": 20,
                }
            )
            for i in range(n)
        )
        + b"\n"
    )
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=5, seed=3)) as sim:
        openai = AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="k", max_retries=0)
        create = openai.chat.completions.create
        summary = await llmgather.run_job(
            create, str(docs), str(out), unpack=True, concurrency=CONCURRENCY
        )
        assert sim.stats["received"] == n
        again = await llmgather.run_job(
            create, str(docs), str(out), unpack=True, concurrency=CONCURRENCY
        )
        assert sim.stats["received"] == n  # everything was finished: nothing sent again
        await openai.close()
    assert (summary.ok, summary.failed, summary.sent) == (n, 0, n)
    assert (again.ok, again.sent, again.resumed) == (n, 0, True)
    lines = read_jsonl(out)
    assert [line["id"] for line in lines] == [f"d{i}" for i in range(n)]
    for line in lines:
        assert line["status"] == "ok" and line["attempts"] == 1 and line["error"] is None
        # The SDK's response object, as its model_dump: the whole answer is kept.
        assert line["value"]["object"] == "chat.completion"
        assert line["value"]["choices"][0]["message"]["content"] == line["text"]
        assert line["usage"]["input_tokens"] > 0  # read from the response: the limiter settled
    assert summary.input_tokens > 0


async def test_values_bad_lines_and_ids(tmp_path: Path) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(
        b'{"id": "a", "text": "one"}\n'
        b'{"text": "no id: known by its line number"}\n'
        b'{"id": 7, "text": "an integer id"}\n'
        b'{"id": "broken", "text": \n'
        b"[1, 2]\n"
        b'{"id": "fails", "text": "boom"}\n'
        b'{"id": "obj", "text": "an object"}\n'
        b'{"id": "none", "text": "nothing"}\n'
        # Not a prompt line: fields a prompt would refuse are the callable's business.
        b'{"id": "odd", "prompt": 5, "messages": "not a list", "text": "odd"}\n'
    )
    seen: list[dict[str, Any]] = []

    async def summarise(doc: dict[str, Any]) -> Any:
        seen.append(doc)
        if doc["text"] == "boom":
            raise ValueError("this document cannot be summarised")
        if doc["text"] == "an object":
            return {"words": 2, "when": object.__new__(_Shown)}
        if doc["text"] == "nothing":
            return None
        return doc["text"].upper()

    out = tmp_path / "out.jsonl"
    summary = await llmgather.run_job(summarise, str(docs), str(out))
    assert (summary.total, summary.ok, summary.failed, summary.invalid) == (9, 6, 1, 2)
    by_id = {line["id"]: line for line in read_jsonl(out)}
    assert by_id["a"]["value"] == "ONE" and by_id["a"]["text"] == "ONE"
    assert by_id["2"]["value"] == "NO ID: KNOWN BY ITS LINE NUMBER"
    assert by_id[7]["value"] == "AN INTEGER ID"  # an integer id goes out as it came
    assert by_id["obj"]["value"] == {"words": 2, "when": "shown"}  # unknown types as str()
    assert by_id["none"]["status"] == "ok" and by_id["none"]["value"] is None
    assert by_id["odd"]["value"] == "ODD"
    assert by_id["broken"]["error"]["type"] == "invalid_input"
    assert "malformed JSON" in by_id["broken"]["error"]["message"]
    assert "docs.jsonl:5: expected a JSON object, got an array" in by_id["5"]["error"]["message"]
    assert by_id["fails"]["status"] == "error" and "value" not in by_id["fails"]
    assert by_id["fails"]["error"] == {
        "type": "ValueError",
        "message": "this document cannot be summarised",
        "status_code": None,
    }
    # The callable had each object whole, its id included, and a failure is not retried.
    assert {"id": "a", "text": "one"} in seen and len(seen) == 7


class _Shown:
    def __str__(self) -> str:
        return "shown"


async def test_a_rerun_with_another_callable_is_refused_as_another_job(tmp_path: Path) -> None:
    docs = write_objects(tmp_path / "docs.jsonl", 5)
    out = tmp_path / "out.jsonl"

    async def first(doc: dict[str, Any]) -> str:
        return "first"

    async def second(doc: dict[str, Any]) -> str:
        return "second"

    await llmgather.run_job(first, str(docs), str(out))
    with pytest.raises(JobMismatchError) as refused:
        await llmgather.run_job(second, str(docs), str(out))
    assert "parameter 'call' was " in str(refused.value)
    assert {line["value"] for line in read_jsonl(out)} == {"first"}
    await llmgather.run_job(second, str(docs), str(out), restart=True)
    assert {line["value"] for line in read_jsonl(out)} == {"second"}


def test_callable_names_are_qualified_and_stable() -> None:
    assert callable_name(write_objects) == "tests.jobs.test_durable_calls.write_objects"
    limiter = LocalLimiter(Limits())
    assert callable_name(limiter.acquire).endswith("LocalLimiter.acquire")
    assert callable_name(_Shown()) == "tests.jobs.test_durable_calls._Shown"


async def test_limits_and_a_shared_limiter_cannot_both_be_given(tmp_path: Path) -> None:
    docs = write_objects(tmp_path / "docs.jsonl", 1)

    async def fn(doc: dict[str, Any]) -> str:
        return ""

    with pytest.raises(llmgather.ConfigurationError, match="not both"):
        await llmgather.run_job(
            fn, str(docs), str(tmp_path / "o.jsonl"), rpm=10, limiter=LocalLimiter(Limits())
        )


async def test_limits_come_as_one_object_or_as_keywords_not_both(tmp_path: Path) -> None:
    docs = write_objects(tmp_path / "docs.jsonl", 3)
    calls: list[dict[str, Any]] = []

    async def fn(doc: dict[str, Any]) -> str:
        calls.append(doc)
        return doc["id"]

    with pytest.raises(
        llmgather.ConfigurationError, match=r"limits=Limits\(...\) or rpm=, not both"
    ):
        await llmgather.run_job(fn, str(docs), str(tmp_path / "o.jsonl"), limits=Limits(), rpm=5)
    summary = await llmgather.run_job(
        fn, str(docs), str(tmp_path / "o.jsonl"), limits=Limits(concurrency=2, rpm=6000)
    )
    assert summary.ok == 3 and len(calls) == 3


class CountingLimiter:
    """A LocalLimiter that counts the permits it grants and the cost they reserve."""

    def __init__(self) -> None:
        self.inner = LocalLimiter(Limits(concurrency=CONCURRENCY))
        self.granted = 0
        self.requests = 0

    async def acquire(self, cost: Cost) -> Permit:
        permit = await self.inner.acquire(cost)
        self.granted += 1
        self.requests += cost.requests
        return permit

    async def release(self, permit: Permit, usage: Usage | None, **kwargs: Any) -> None:
        await self.inner.release(permit, usage, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_chat_llmgather_chain_spends_one_permit_per_item(tmp_path: Path) -> None:
    """The model inside the chain shares the job's limiter and sends under the job's permit:
    one permit per item, not two (the chain's model would otherwise take its own)."""
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from llmgather.langchain import ChatLLMGather

    n = 40
    docs = write_objects(tmp_path / "docs.jsonl", n)
    out = tmp_path / "out.jsonl"
    limiter = CountingLimiter()
    with EmbeddedSimulator(SimConfig(latency_ms=5, seed=3)) as sim:
        chat = ChatLLMGather(
            model="openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="k", limiter=limiter
        )
        chain = ChatPromptTemplate.from_template("Summarise: {text}") | chat | StrOutputParser()
        summary = await llmgather.run_job(
            chain.ainvoke, str(docs), str(out), limiter=limiter, name="summaries"
        )
        received = sim.stats["received"]
        await chat.aclose()
    assert summary.ok == n and received == n
    assert (limiter.granted, limiter.requests) == (n, n)
    lines = read_jsonl(out)
    assert all(isinstance(line["value"], str) and line["value"] for line in lines)


SCRIPT = """
import asyncio
import sys

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import llmgather
from llmgather.langchain import ChatLLMGather

base_url, docs, out, concurrency = sys.argv[1:5]
chat = ChatLLMGather(model="openai:gpt-4o-mini", base_url=base_url, api_key="k")
chain = ChatPromptTemplate.from_template("Summarise: {text}") | chat | StrOutputParser()


async def main() -> None:
    summary = await llmgather.run_job(
        chain.ainvoke, docs, out, concurrency=int(concurrency), name="summaries"
    )
    await chat.aclose()
    print(summary.ok, summary.sent)


asyncio.run(main())
"""


def test_a_langchain_chain_killed_with_sigkill_resumes_with_one_result_per_input(
    tmp_path: Path,
) -> None:
    n = 300
    docs = write_objects(tmp_path / "docs.jsonl", n)
    out = tmp_path / "out.jsonl"
    script = tmp_path / "durable_chain.py"
    script.write_text(textwrap.dedent(SCRIPT))
    with EmbeddedSimulator(SimConfig(latency_ms=40, seed=5)) as sim:
        args = [sys.executable, str(script), sim.base_url + "/v1", str(docs), str(out)]
        args.append(str(CONCURRENCY))
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()
        )
        committed = _wait_for_committed(out, process, at_least=60)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        assert committed < n  # killed mid-run
        finished = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=30)
        received = sim.stats["received"]
    assert finished.returncode == 0, finished.stderr
    ok, sent = map(int, finished.stdout.split())
    assert ok == n and sent <= n - committed  # the rerun called only what was unfinished
    lines = read_jsonl(out)
    ids = [line["id"] for line in lines]
    assert sorted(ids) == sorted(f"d{i}" for i in range(n))  # every id, once
    assert all(line["status"] == "ok" and isinstance(line["value"], str) for line in lines)
    # What was in flight at the kill (and what arrived while a commit was being written) may
    # be sent twice; nothing finished before it is.
    assert received <= n + CONCURRENCY + 4, received


def _wait_for_committed(out: Path, process: subprocess.Popen[str], at_least: int) -> int:
    """Wait until the output shows `at_least` results: each line is appended once its result
    is committed to the job store. How many it shows then."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        lines = out.read_bytes().count(b"\n") if out.exists() else 0
        if lines >= at_least:
            return lines
        time.sleep(0.02)
    raise AssertionError(f"no {at_least} results in {out} after 20 s")


async def test_a_lambda_or_a_chain_must_be_named(tmp_path: Path) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(b'{"text": "a"}\n')

    async def echo(x: Any) -> Any:
        return x

    with pytest.raises(llmgather.ConfigurationError, match="name="):
        await llmgather.run_job(lambda x: echo(x), str(docs), str(tmp_path / "out.jsonl"))
    summary = await llmgather.run_job(
        lambda x: echo(x), str(docs), str(tmp_path / "out.jsonl"), name="echo"
    )
    assert summary.ok == 1


def test_a_value_with_keys_that_are_not_strings_stays_json() -> None:
    from llmgather.jobs.values import json_fragment

    assert orjson.loads(orjson.dumps({"v": json_fragment({1: "a", "b": [1, 2]})})) == {
        "v": {"1": "a", "b": [1, 2]}
    }

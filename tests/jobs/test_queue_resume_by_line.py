"""`run --queue` follows the rules of resume by line: a rerun on an edited input enqueues what
changed and nothing else, and no answer Redis holds for an old request is taken for a new one."""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from pathlib import Path

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import cli_env, read_jsonl
from tests.jobs.test_redis_queue import (
    finish,
    llmgather,
    output_ids,
    received,
    start_coordinator,
    start_worker,
    stop_all,
    write_prompts,
)


def test_a_queued_rerun_sends_exactly_the_added_and_the_changed_items(
    tmp_path: Path, redis_url: str
) -> None:
    queue = uuid.uuid4().hex
    prompts = write_prompts(tmp_path / "in.jsonl", 200)
    output = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=1)) as sim:
        workers = [start_worker(redis_url, queue, sim, tmp_path / "w.log")]
        try:
            assert finish(start_coordinator(redis_url, queue, prompts, output))["ok"] == 200
            write_prompts(tmp_path / "all.jsonl", 300)
            prompts.write_bytes((tmp_path / "all.jsonl").read_bytes())
            appended = finish(start_coordinator(redis_url, queue, prompts, output))
            assert received(sim) == 300
            before = {line["id"]: line["text"] for line in read_jsonl(output)}
            prompts.write_text(prompts.read_text().replace('"question 7"', '"question seven"'))
            refused = start_coordinator(redis_url, queue, prompts, output)
            _, stderr = refused.communicate(timeout=60)
            assert refused.returncode == 2, stderr
            assert "'item-7' (line 8)" in stderr and "--resend-changed" in stderr
            assert received(sim) == 300
            args = llmgather("run", str(prompts), "-o", str(output), "--queue", redis_url)
            args += ["--queue-name", queue, "--json", "-q", "--max-tokens", "16"]
            resent = subprocess.run(
                [*args, "--resend-changed"], capture_output=True, text=True, env=cli_env()
            )
            assert resent.returncode == 0, resent.stderr
            assert received(sim) == 301
        finally:
            stop_all(workers)
        assert appended["changes"] == ["100 items new in the input"]
        assert output_ids(output) == Counter({f"item-{i}": 1 for i in range(300)})
        after = {line["id"]: line["text"] for line in read_jsonl(output)}
        # The new request's answer, not the one Redis still holds for the old request.
        assert after["item-7"] != before["item-7"]
        assert all(after[id] == text for id, text in before.items() if id != "item-7")

"""The LiteLLM proxy as a gateway under test: its config file, its command, its process.

Default settings but three: keyless on loopback (`dangerously_permit_weak_or_unset_master_key`),
retries off (`num_retries: 0` for the router, `max_retries: 0` for its OpenAI client, so a 429
reaches the client as llmgather's would, with no hidden retry), and the upstream's request
limit as its `rpm` setting on the model when the scenario has one. `LITELLM_LOCAL_MODEL_COST_MAP`
keeps it from fetching its cost map from the network at start.

The command: $LLMGATHER_LITELLM, else the `litellm` next to this Python (the bench extra), else
`litellm` on the PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from llmgather.bench._servers import SIM_KEY, GatewayUnavailable, ServerProcess

NAME = "LiteLLM proxy"
STARTUP_S = 120.0  # it imports a great deal; a busy 2-core machine takes ~20 s


def litellm_command() -> str:
    """The `litellm` executable, or GatewayUnavailable saying how to install it."""
    found = os.environ.get("LLMGATHER_LITELLM")
    if not found:
        beside = Path(sys.executable).with_name("litellm")
        found = str(beside) if beside.exists() else shutil.which("litellm")
    if not found:
        raise GatewayUnavailable(
            "LiteLLM is not installed: pip install 'llmgather[bench]' (it brings "
            "litellm[proxy]), or set LLMGATHER_LITELLM to a `litellm` executable"
        )
    return found


def config(upstream: str, *, rpm: float | None = None) -> dict[str, Any]:
    """The proxy's config: one model, `gpt-4o-mini`, sent to the simulator at `upstream`."""
    params: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "api_base": upstream,
        "api_key": SIM_KEY,
        "max_retries": 0,
    }
    if rpm:
        params["rpm"] = int(rpm)
    return {
        "model_list": [{"model_name": "gpt-4o-mini", "litellm_params": params}],
        "litellm_settings": {"num_retries": 0},
        "router_settings": {"num_retries": 0},
        "general_settings": {"dangerously_permit_weak_or_unset_master_key": True},
    }


def litellm_proxy(upstream: str, work: Path, *, rpm: float | None = None) -> ServerProcess:
    """The proxy in front of the simulator at `upstream` (an OpenAI base URL); not started."""
    proxy = litellm_command()

    def command(port: int) -> list[str]:
        path = work / f"litellm-{port}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config(upstream, rpm=rpm), indent=2))  # JSON is YAML
        return [proxy, "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]

    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return ServerProcess(
        NAME,
        command,
        ready_path="/health/liveliness",
        log=work / "litellm.log",
        env=env,
        startup_s=STARTUP_S,
    )

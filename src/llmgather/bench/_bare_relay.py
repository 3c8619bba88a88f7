"""The floor of any gateway built on uvicorn, for the `gateway` scenario: a bare ASGI app that
relays `POST /v1/chat/completions` to the upstream on one `Http11Transport` and answers with the
upstream's bytes. No limiter, queue, retries, metrics, dialects or FastAPI: what uvicorn (on
uvloop and httptools, as `llmgather serve` runs) and one upstream call cost on this machine,
with nothing of llmgather's service on top. Not a product: a measuring stick.

    python -m llmgather.bench._bare_relay --port P --upstream http://127.0.0.1:S/v1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from llmgather.bench._servers import SIM_KEY, ServerProcess
from llmgather.transport import Http11Transport, HttpRequest

NAME = "bare relay on uvicorn (floor)"
_JSON = [(b"content-type", b"application/json")]


def relay_app(upstream: str) -> Any:
    transport = Http11Transport(max_connections=256)
    url = upstream + "/chat/completions"
    headers = {"content-type": "application/json", "authorization": f"Bearer {SIM_KEY}"}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST" and scope["path"] == "/v1/chat/completions":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            answer = await transport.send(HttpRequest("POST", url, headers, body))
            status, content = answer.status, answer.body
        elif scope["method"] == "GET" and scope["path"] == "/readyz":
            status, content = 200, b"{}"
        else:
            status, content = 404, b"{}"
        await send({"type": "http.response.start", "status": status, "headers": _JSON})
        await send({"type": "http.response.body", "body": content})

    return app


def bare_relay(upstream: str, work: Path, *, rpm: float | None = None) -> ServerProcess:
    """The bare relay in front of the simulator at `upstream`; told no limit (it has none)."""

    def command(port: int) -> list[str]:
        args = [sys.executable, "-m", "llmgather.bench._bare_relay", "--port", str(port)]
        return [*args, "--upstream", upstream]

    return ServerProcess(NAME, command, ready_path="/readyz", log=work / "bare.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's OpenAI base URL")
    options = parser.parse_args()
    import uvicorn  # the serve extra's: imported only where the relay runs

    uvicorn.run(
        relay_app(options.upstream),
        host="127.0.0.1",
        port=options.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

"""The `llmgather serve` command: the HTTP service and gateway, on uvicorn, until stopped."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import click

from llmgather._config import Limits
from llmgather._errors import ConfigurationError
from llmgather._retry import RetryPolicy
from llmgather.cache.open import cache_setting
from llmgather.cli._console import fail, simulator_banner, stderr
from llmgather.cli._listen import listening_socket
from llmgather.cli._options import (
    FiniteFloat,
    cache_option,
    prices_option,
    read_prices,
    secret_file,
    sending_options,
)
from llmgather.service.settings import (
    DEFAULT_MAX_JOB_BYTES,
    DEFAULT_RETENTION_MAX,
    DEFAULT_RETENTION_S,
)

# The service package needs the `serve` extra; its settings module does not.
TOKEN_ENV = "LLMGATHER_SERVE_TOKEN"

EXIT_USAGE = 2


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind; any but loopback requires --token.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
@sending_options(omit=("limiter", "limiter_key", "stream"))
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    help=f"Bearer token clients must send (or set {TOKEN_ENV}, or use --token-file: on a "
    "command line every local user sees it with ps). Required off loopback.",
)
@secret_file("token", "--token", "the bearer token", envvar=TOKEN_ENV)
@click.option(
    "--queue-timeout",
    type=FiniteFloat(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Longest wait in the queue for the shared limits; a request that would wait longer gets a 429 with a Retry-After.",
)
@click.option(
    "--jobs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".llmgather-serve"),
    show_default=True,
    help="Where background requests and jobs are stored; a restarted service resumes them.",
)
@click.option(
    "--retention",
    "retention_h",
    type=FiniteFloat(min=0, min_open=True),
    default=DEFAULT_RETENTION_S / 3600,
    show_default=True,
    metavar="HOURS",
    help="How long a finished background /generate stays readable before its folder is removed.",
)
@click.option(
    "--retention-max",
    type=click.IntRange(min=1),
    default=DEFAULT_RETENTION_MAX,
    show_default=True,
    metavar="N",
    help="The most finished background /generates kept (the oldest go first).",
)
@click.option(
    "--max-job-mb",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_JOB_BYTES // (1024 * 1024),
    show_default=True,
    metavar="MB",
    help="The largest body POST /v1/jobs takes; a larger one is refused (413) as it arrives.",
)
@cache_option("a SQLite file in --jobs-dir (streamed gateway calls always go upstream)")
@prices_option
def serve_command(
    host: str,
    port: int,
    token: str | None,
    queue_timeout: float,
    jobs_dir: Path,
    retention_h: float,
    retention_max: int,
    max_job_mb: int,
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    limits: Limits,
    max_attempts: int,
    max_retry_wait: float,
    timeout: float,
    cache_values: tuple[str, ...],
    prices_path: str | None,
) -> None:
    """Serve /generate, an OpenAI, Anthropic and Gemini gateway, jobs and /metrics, all
    sending through one engine under one set of limits."""
    try:
        import uvicorn

        from llmgather.service import ServiceSettings, create_app
        from llmgather.service.server import ServiceServer
    except ImportError as exc:
        fail(
            f"llmgather serve needs its extra: pip install 'llmgather[serve]' ({exc.name} is missing)",
            EXIT_USAGE,
        )
    try:
        settings = ServiceSettings(
            model=model,
            base_url=base_url,
            api_key=api_key,
            limits=limits,
            retry=RetryPolicy(max_attempts=max_attempts, max_retry_wait=max_retry_wait),
            timeout_s=timeout,
            queue_timeout_s=queue_timeout,
            token=token,
            jobs_dir=jobs_dir,
            retention_s=retention_h * 3600,
            retention_max=retention_max,
            max_job_bytes=max_job_mb * 1024 * 1024,
            host=host,
            cache=cache_setting(cache_values),
            prices=read_prices(prices_path, EXIT_USAGE),
        )
        # The provider's key variables are read here, as `run` reads them, and nowhere deeper.
        app = create_app(settings, env=os.environ)
    except ConfigurationError as exc:
        fail(str(exc), EXIT_USAGE)
    sock = listening_socket(host, port)
    bound_port = sock.getsockname()[1]
    upstream = app.state.upstream
    if upstream.simulated:
        simulator_banner("started by the service")
    shown_host = f"[{host}]" if ":" in host else host
    stderr.print(
        f"llmgather serve: http://{shown_host}:{bound_port} → {upstream.target.describe()}"
        f" (docs at /docs, dashboard at /)"
    )
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # nothing is proxied to a loopback service; a layer less per request
        timeout_graceful_shutdown=30,
        lifespan="on",
    )
    _settle_the_heap()
    ServiceServer(config, app.state).run(sockets=[sock])


def _settle_the_heap() -> None:
    """Keep the garbage collector off the request path of this process, which is ours alone.

    The app and its imports (FastAPI, pydantic, prometheus) leave tens of thousands of
    long-lived objects that every older-generation collection walks again, and each relayed
    request allocates enough to trigger a young collection every few requests, so the
    collector took a real share of a relayed request's CPU (BENCHMARKS.md, gateway). Frozen,
    the startup objects are never walked again; with young collections far rarer, cyclic
    garbage still goes within 50,000 allocations (a few MB).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)

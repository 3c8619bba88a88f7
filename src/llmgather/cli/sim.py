"""The `llmgather sim` command: serve the simulated LLM API until interrupted."""

from __future__ import annotations

import click

from llmgather.cli._listen import listening_socket
from llmgather.cli._options import FiniteFloat, secret_file
from llmgather.sim.config import SimConfig
from llmgather.sim.faults import FAULT_KINDS, FaultPlan

DEFAULT_LATENCY_MS = 500.0


def _parse_faults(ctx: click.Context, param: click.Parameter, value: str | None) -> FaultPlan:
    try:
        return FaultPlan.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.command("sim")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind; keep the loopback default unless others must reach it.",
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--rpm",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Requests per minute allowed before answering 429 (default: unlimited).",
)
@click.option(
    "--rpd",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Requests per day allowed before answering 429 (default: unlimited). The whole "
    "day's budget may be spent at once; it then refills evenly over the day, as OpenAI's does.",
)
@click.option(
    "--tpm",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Tokens per minute (prompt + max output, settled to real usage) "
    "before answering 429 (default: unlimited).",
)
@click.option(
    "--itpm",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Input (prompt) tokens per minute, counted on arrival, as Anthropic limits them "
    "(default: unlimited).",
)
@click.option(
    "--otpm",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Output tokens per minute, reserved from max_tokens on arrival and settled to the "
    "real output when the answer ends, as Anthropic limits them (default: unlimited).",
)
@click.option(
    "--latency-ms",
    type=FiniteFloat(min=0),
    default=DEFAULT_LATENCY_MS,
    show_default=True,
    help="Mean total latency of a response: about 25% before the first token, the "
    "rest spread over the output tokens, with seeded jitter. The default is "
    "realistic for use by hand; 0 answers at once (for benchmarks and tests).",
)
@click.option(
    "--faults",
    "faults",
    callback=_parse_faults,
    default=None,
    metavar="SPEC",
    help="Faults to inject, as KIND=RATE pairs separated by commas, e.g. "
    "'500=0.1,429=0.05,reset=0.02,cut=0.01'. Kinds: "
    + ", ".join(FAULT_KINDS)
    + ". Rates add up to at most 1, except preempt: an answered request that draws it cuts "
    "every stream in progress (ending it without its final event), as llama-cpp-python's "
    "server does; preempt=1 is that server, and it combines with the other kinds. "
    "done_early ends a stream with its end event but no finish reason (OpenAI's "
    "'data: [DONE]' with no finish_reason, Anthropic's message_stop with no stop_reason; "
    "Gemini's, which has no end event, as cut) and leaves plain answers alone.",
)
@click.option(
    "--require-key",
    envvar="LLMGATHER_SIM_KEY",
    default=None,
    metavar="KEY",
    help="Only accept this API key; any other gets the provider's auth error "
    "(also read from LLMGATHER_SIM_KEY, or use --require-key-file).",
)
@secret_file("require_key", "--require-key", "the key to require", envvar="LLMGATHER_SIM_KEY")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the answers, latencies and faults: same seed, same answers.",
)
@click.option(
    "--stall-s",
    type=FiniteFloat(min=0),
    default=30.0,
    show_default=True,
    help="How long a 'stall' fault waits before answering anyway.",
)
@click.option(
    "--fault-retry-after",
    type=FiniteFloat(min=0),
    default=1.0,
    show_default=True,
    help="Retry hint, in seconds, of an injected 429.",
)
@click.option(
    "--capacity",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Requests worked on at once; more queue, like a busy server (0 = unlimited).",
)
@click.option(
    "--no-limit-headers",
    "limit_headers",
    flag_value=False,
    default=True,
    help="Announce no limit in any header (x-ratelimit-*, anthropic-ratelimit-*), as many "
    "OpenAI-compatible servers and gateways do: clients learn only from the 429s.",
)
def sim_command(
    host: str,
    port: int,
    rpm: float | None,
    rpd: float | None,
    tpm: float | None,
    itpm: float | None,
    otpm: float | None,
    latency_ms: float,
    faults: FaultPlan,
    require_key: str | None,
    seed: int,
    stall_s: float,
    fault_retry_after: float,
    capacity: int,
    limit_headers: bool,
) -> None:
    """Serve a simulated LLM API: OpenAI, Gemini and Anthropic wire formats on one port.

    \b
    OpenAI     POST /v1/chat/completions
    Gemini     POST /v1beta/models/{model}:generateContent
               POST /v1beta/models/{model}:streamGenerateContent?alt=sse
    Anthropic  POST /v1/messages
    Stats      GET /_sim/stats, GET /_sim/log, POST /_sim/reset
    Limits     GET /_sim/limits, POST /_sim/limits {"rpm": 300, "tpm": null}
               (changes them while it runs; null removes one)
    Key        POST /_sim/key {"require_key": "KEY"} (null: any key), while it runs

    Point an SDK at it with its base URL (OpenAI: http://HOST:PORT/v1). Answers are
    deterministic for a prompt and --seed. Stop with Ctrl-C.
    """
    from llmgather.sim.server import run_forever  # aiohttp only when actually serving

    config = SimConfig(
        rpm=rpm,
        rpd=rpd,
        tpm=tpm,
        itpm=itpm,
        otpm=otpm,
        latency_ms=latency_ms,
        seed=seed,
        faults=faults,
        require_key=require_key,
        stall_s=stall_s,
        fault_retry_after_s=fault_retry_after,
        capacity=capacity,
        limit_headers=limit_headers,
    )
    # Bound here, before the server starts: a port in use is said as `serve` says it.
    run_forever(config, host, port, sock=listening_socket(host, port))

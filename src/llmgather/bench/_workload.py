"""What the contenders send, and the ceiling the simulator's limits allow for it.

The ceiling scenario runs two phases in input order. Phase A has short prompts: each uses few
tokens, so the request limit (RPM) binds. Phase B has long prompts: each uses many tokens, so
the token limit (TPM) binds. A phase of n requests whose real token use (prompt estimate plus
the answer's actual output, after the simulator settles the reservation) sums to A tokens
cannot finish faster than max(n / rpm, A / tpm) minutes, so for the whole run:

    ceiling_s = Σ over phases of 60 · max(n_p / rpm, A_p / tpm)

Requests are started in input order by every contender, so this is the bound that applies to
them; `any_order_s` = 60 · max(N / rpm, A / tpm) is the looser bound of a client free to
reorder (it could overlap the phases). The start-up bursts the buckets allow (one second of each
limit in the simulator) are not credited, so a client that uses them can pass 100 % slightly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from llmgather._tokens import estimate_prompt_tokens
from llmgather.sim.text import generate

MODEL = "gpt-4o-mini"
SIM_SEED = 0
MAX_TOKENS = 64  # at least the simulator's longest answer: no answer is cut, unused output refunded

_FILLER = (
    "Background: the river data set records daily flow, temperature and turbidity at forty "
    "stations over twelve years, with gaps where sensors failed and notes from field crews. "
)


def short_prompts(n: int, tag: str = "q") -> list[str]:
    """Prompts of a dozen tokens: cheap requests, the RPM limit is what binds."""
    return [f"{tag}{i}: name one reason birds migrate." for i in range(n)]


def long_prompts(n: int, tag: str = "long", repeat: int = 9) -> list[str]:
    """Prompts of ~400 tokens: expensive requests, the TPM limit is what binds."""
    body = _FILLER * repeat
    return [f"{tag}{i}: {body}Summarise the findings for station {i}." for i in range(n)]


def actual_tokens(prompt: str, max_tokens: int = MAX_TOKENS, seed: int = SIM_SEED) -> int:
    """What the simulator finally charges for `prompt`: prompt estimate + real output words."""
    messages = [{"role": "user", "content": prompt}]
    return estimate_prompt_tokens(messages) + generate(prompt, seed, max_tokens).output_tokens


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    requests: int
    tokens: int  # actual tokens, summed
    binds: str  # "rpm" or "tpm"
    seconds: float  # fastest the limits allow this phase


@dataclass(frozen=True, slots=True)
class CeilingPlan:
    rpm: float
    tpm: float
    phases: tuple[Phase, ...]
    ceiling_s: float
    any_order_s: float

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.phases)

    def pct_of_ceiling(self, ok: int, wall_s: float) -> float:
        """Achieved throughput (ok items per second) as a percentage of the ceiling's."""
        if wall_s <= 0 or self.requests == 0:
            return 0.0
        return 100.0 * (ok / wall_s) / (self.requests / self.ceiling_s)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["requests"] = self.requests
        return data


def plan_ceiling(phases: list[tuple[str, list[str]]], *, rpm: float, tpm: float) -> CeilingPlan:
    """The ceiling for prompts sent phase after phase under `rpm` and `tpm`."""
    planned = []
    total_tokens = 0
    for name, prompts in phases:
        tokens = sum(actual_tokens(p) for p in prompts)
        total_tokens += tokens
        by_requests = 60.0 * len(prompts) / rpm
        by_tokens = 60.0 * tokens / tpm
        binds = "rpm" if by_requests >= by_tokens else "tpm"
        planned.append(Phase(name, len(prompts), tokens, binds, max(by_requests, by_tokens)))
    count = sum(p.requests for p in planned)
    return CeilingPlan(
        rpm=rpm,
        tpm=tpm,
        phases=tuple(planned),
        ceiling_s=sum(p.seconds for p in planned),
        any_order_s=max(60.0 * count / rpm, 60.0 * total_tokens / tpm),
    )


def ceiling_prompts(short: int, long: int) -> list[tuple[str, list[str]]]:
    return [("A: short prompts", short_prompts(short)), ("B: long prompts", long_prompts(long))]


def prompts_for(spec: dict[str, Any]) -> list[str]:
    """The prompt list a contender's spec describes (so no big list crosses the pipe)."""
    kind = spec["workload"]
    if kind == "short":
        return short_prompts(spec["count"])
    if kind == "ceiling":
        return [p for _, prompts in ceiling_prompts(spec["short"], spec["long"]) for p in prompts]
    raise ValueError(f"unknown workload {kind!r}")

"""What the contenders send, and the ceiling the simulator's limits allow for it.

The ceiling scenario sends a repeating mix of one long prompt (~440 tokens used) and two short
ones (~50 tokens): after a long prompt the token limit (TPM) is what refuses the next request,
after short ones the request limit (RPM) is, so both bind over and over during the run. The TPM
limit is set from the mix so that neither limit is slack on average.

A request's cost against TPM is what the simulator finally charges: the prompt estimate plus
the answer's real output (it reserves prompt + max_tokens at admission and refunds the unused
output when the answer is complete). For N requests using A tokens in all, no client, whatever
order it sends them in, can finish sooner than

    ceiling_s = 60 · max(N / rpm, A / tpm)

and the ceiling throughput is N / ceiling_s. The buckets start full (one second of each limit in
the simulator); that start-up burst is not credited, and a run that ends sooner than
`ceiling_s` (by using it, or by giving up on items) is charged `ceiling_s`, so the percentage
never passes 100.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from llmgather.limits.tokens import estimate_prompt_tokens
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
class CeilingPlan:
    rpm: float
    tpm: float
    requests: int
    tokens: int  # actual tokens, summed over every request
    rpm_bound_s: float  # least time the request limit allows
    tpm_bound_s: float  # least time the token limit allows

    @property
    def ceiling_s(self) -> float:
        return max(self.rpm_bound_s, self.tpm_bound_s)

    @property
    def ceiling_rps(self) -> float:
        return self.requests / self.ceiling_s

    def pct_of_ceiling(self, ok: int, wall_s: float) -> float:
        """ok items per second over the run as a percentage of the ceiling throughput."""
        if self.requests == 0:
            return 0.0
        return 100.0 * (ok / self.requests) * self.ceiling_s / max(wall_s, self.ceiling_s)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ceiling_s": self.ceiling_s, "ceiling_rps": self.ceiling_rps}


def ceiling_prompts(count: int) -> list[str]:
    """`count` prompts repeating long, short, short."""
    longs = iter(long_prompts(count))
    shorts = iter(short_prompts(count))
    return [next(longs) if i % 3 == 0 else next(shorts) for i in range(count)]


def balanced_tpm(prompts: list[str], rpm: float) -> float:
    """The TPM limit (rounded to 1,000) at which the mix uses tokens as fast as requests."""
    mean = sum(actual_tokens(p) for p in prompts) / len(prompts)
    return float(round(rpm * mean, -3))


def plan_ceiling(prompts: list[str], *, rpm: float, tpm: float) -> CeilingPlan:
    """The ceiling for sending `prompts` under `rpm` and `tpm`."""
    tokens = sum(actual_tokens(p) for p in prompts)
    return CeilingPlan(
        rpm=rpm,
        tpm=tpm,
        requests=len(prompts),
        tokens=tokens,
        rpm_bound_s=60.0 * len(prompts) / rpm,
        tpm_bound_s=60.0 * tokens / tpm,
    )


def prompts_for(spec: dict[str, Any]) -> list[str]:
    """The prompt list a contender's spec describes (so no big list crosses the pipe)."""
    kind = spec["workload"]
    if kind == "short":
        return short_prompts(spec["count"])
    if kind == "ceiling":
        return ceiling_prompts(spec["count"])
    raise ValueError(f"unknown workload {kind!r}")

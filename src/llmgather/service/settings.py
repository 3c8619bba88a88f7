"""What `llmgather serve` is told: the upstream, its limits, and how the service behaves."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmgather._config import DEFAULT_TIMEOUT_S, Limits
from llmgather._errors import ConfigurationError
from llmgather._retry import RetryPolicy
from llmgather.cache.open import CacheSetting

if TYPE_CHECKING:
    from llmgather.pricing import Prices
    from llmgather.sim.config import SimConfig

DEFAULT_QUEUE_TIMEOUT_S = 60.0
DEFAULT_RETENTION_S = 24 * 3600.0
DEFAULT_RETENTION_MAX = 10_000  # about 40 KB on disk each
DEFAULT_MAX_JOB_BYTES = 512 * 1024 * 1024
FIRST_KEY_RECHECK_S = 2.0
LOOPBACK_NAMES = frozenset({"localhost"})
TOKEN_ENV = "LLMGATHER_SERVE_TOKEN"  # where `llmgather serve` also reads the token


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """`queue_timeout_s`: the longest a request may wait in the gateway's queue for the shared
    limits; one whose projected wait is longer is answered 429 at once, with a Retry-After.
    `token`: the bearer token every route but the health checks requires (needed off
    loopback). `jobs_dir`: where background work and jobs are stored, durably.
    `retention_s` and `retention_max`: how long a finished background `/generate` stays
    readable, and how many are kept at most (the oldest go first). `max_job_bytes`: the largest
    body `POST /v1/jobs` takes. `key_recheck_s`: how long after the upstream refused the key it
    is first asked again (then twice as long each time, up to a minute). `prices`: what
    prices each answer's cost (`pricing.chain`), shown in /metrics, jobs' lines and answers."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = DEFAULT_TIMEOUT_S
    queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S
    token: str | None = field(default=None, repr=False)
    jobs_dir: Path = Path(".llmgather-serve")
    retention_s: float = DEFAULT_RETENTION_S
    retention_max: int = DEFAULT_RETENTION_MAX
    max_job_bytes: int = DEFAULT_MAX_JOB_BYTES
    key_recheck_s: float = FIRST_KEY_RECHECK_S
    host: str = "127.0.0.1"
    simulator: SimConfig | None = None  # for the embedded simulator, when one starts
    cache: CacheSetting | None = None  # answers seen before, from a response cache (`--cache`)
    prices: Prices | None = None  # the user's over genai-prices' table (None: the table alone)

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ConfigurationError(
                "the host to serve on is empty: give the address of an interface to bind, "
                "such as 127.0.0.1 (this machine only, the default) or 0.0.0.0 (every "
                "interface, with a token)"
            )
        if not is_loopback(self.host) and not self.token:
            raise ConfigurationError(
                f"serving on {self.host} would let other machines spend this service's API "
                f"key: give a bearer token (--token or {TOKEN_ENV}), or keep 127.0.0.1"
            )
        for name in ("retention_s", "retention_max", "max_job_bytes", "key_recheck_s"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(
                    f"ServiceSettings({name}=…) must be positive, got {getattr(self, name)!r}"
                )


def is_loopback(host: str) -> bool:
    """Whether `host` reaches only this machine: `localhost`, any address of 127.0.0.0/8, or
    ::1 (also written as an IPv4-mapped IPv6 address, ::ffff:127.x.y.z)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name other than localhost: it may resolve to any interface
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback

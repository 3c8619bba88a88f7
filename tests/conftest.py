"""Shared fixtures: simulators and a Redis server on 127.0.0.1, no provider key or proxy from
the developer's shell; and, when pytest-xdist runs the suite in several processes, the machine to
itself for a `quiet` test. Helpers that tests import live in modules of their own (clihelpers,
simfixtures, servicefixtures, …), never here."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgather.bench.redis_server import RedisServer
from llmgather.sim import EmbeddedSimulator, SimConfig, start_simulator
from llmgather.sim.server import RunningSimulator
from tests.clihelpers import PROVIDER_KEYS, PROXY_VARIABLES
from tests.loopbackserver import refusing_ports

# -- a quiet machine for the tests that race real time --------------------------------------------
# A test marked `quiet` paces real requests against a limit the simulator enforces just as
# exactly (or measures a rate): on a machine busy with the other workers' tests its requests are
# delayed unevenly, arrive bunched, and meet 429s the code under test did not cause. So under
# xdist it runs alone: every test holds the machine shared, a quiet one holds it exclusively.
# The gate lets a quiet test in ahead of the tests still queued; it waits only for those running.
LOCK_DIR = "llmgather_lock_dir"
LOCK_DIR_KEY = pytest.StashKey[str]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """On xdist's controller: one folder of lock files for the run, handed to every worker."""
    stash = node.config.stash
    if LOCK_DIR_KEY not in stash:
        stash[LOCK_DIR_KEY] = tempfile.mkdtemp(prefix="llmgather-tests-")
    node.workerinput[LOCK_DIR] = stash[LOCK_DIR_KEY]


def pytest_unconfigure(config: pytest.Config) -> None:
    if LOCK_DIR_KEY in config.stash:
        shutil.rmtree(config.stash[LOCK_DIR_KEY], ignore_errors=True)


@contextlib.contextmanager
def machine_held(config: pytest.Config, *, alone: bool) -> Iterator[None]:
    directory = getattr(config, "workerinput", {}).get(LOCK_DIR)
    if directory is None:  # one process runs every test, one at a time
        yield
        return
    # Closing the files releases the locks, also when the test fails; a child process the test
    # starts does not inherit them (Python opens files non-inheritable).
    with open(Path(directory, "gate"), "ab") as gate, open(Path(directory, "machine"), "ab") as m:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(m, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    # Outermost, so that the wait for the machine is not counted in the test's own timeout.
    with machine_held(item.config, alone=item.get_closest_marker("quiet") is not None):
        return (yield)


@pytest.fixture(autouse=True)
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real provider, whatever the developer's shell exports."""
    for name in PROVIDER_KEYS + PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free 127.0.0.1 port for the whole session; tests keep apart by
    using keys of their own."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(SimConfig(seed=1)) as running:
        yield running


@pytest.fixture
def threaded_sim() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(SimConfig(seed=1)) as running:
        yield running


@pytest.fixture
def closed_port() -> Iterator[Callable[[], int]]:
    """`closed_port()`: a 127.0.0.1 port every connection to is refused, for the whole test
    (held bound, so no other test process's server can take it meanwhile)."""
    with refusing_ports() as port:
        yield port

"""A real HTTP proxy (proxy.py, from PyPI) as a child process on 127.0.0.1 and a free port, for
the proxy tests; its access log tells which requests went through it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 30.0


@dataclass
class ProxyProcess:
    port: int
    log: Path
    scheme: str = "http"

    def url(self, userinfo: str = "") -> str:
        return f"{self.scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    def access_lines(self) -> list[str]:
        """One line per request or tunnel the proxy served, written as its connection ends."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if "access_log" in line]

    def wait_for(self, needle: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """The access lines holding `needle`, once there are `count` of them: the proxy writes
        a line when the connection it served closes, a moment after the client's close."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.access_lines() if needle in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)


@contextlib.contextmanager
def proxy_process(
    folder: Path, *, basic_auth: str | None = None, tls: tuple[Path, Path] | None = None
) -> Iterator[ProxyProcess]:
    """proxy.py serving on 127.0.0.1 until the block ends; `basic_auth` ("user:password")
    makes it answer 407 to requests without those credentials; `tls` (certificate and key
    files) makes it an https:// proxy, TLS to the proxy itself."""
    folder.mkdir(parents=True, exist_ok=True)
    port_file, log = folder / "port", folder / "proxy.log"
    args = [
        sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
        "--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1",
        "--log-file", str(log), "--log-level", "INFO",
    ]  # fmt: skip
    if basic_auth is not None:
        args += ["--basic-auth", basic_auth]
    if tls is not None:
        args += ["--cert-file", str(tls[0]), "--key-file", str(tls[1])]
    with open(folder / "stderr", "wb") as stderr:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip().isdigit()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"proxy.py did not start: {(folder / 'stderr').read_text()[-2000:]}"
                )
            time.sleep(0.02)
        yield ProxyProcess(int(port_file.read_text()), log, "https" if tls else "http")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

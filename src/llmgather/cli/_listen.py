"""The listening socket of a command that serves (`serve`, `sim`): bound before anything is
started, and a port in use or an address not here said in one line, never a traceback."""

from __future__ import annotations

import socket

from llmgather.cli._console import fail

__all__ = ["EXIT_CANNOT_LISTEN", "listening_socket"]

EXIT_CANNOT_LISTEN = 2  # a usage error: another --port or --host is the fix
BACKLOG = 2048


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (0: a free port) and listening; exits with a clear error
    when it cannot be."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening before any banner: a client that reads it and connects at once waits in
        # the backlog until the server has started, rather than being refused.
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_CANNOT_LISTEN)
    return sock

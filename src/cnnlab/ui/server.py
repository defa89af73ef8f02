"""Serving the dashboard with uvicorn on a socket bound before it starts (so the address is known)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

import uvicorn

from cnnlab.errors import ConfigError, Problem
from cnnlab.ui.app import LOOPBACK_NAMES, create_app
from cnnlab.ui.source import Source

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def allowed_hosts(host: str) -> list[str]:
    """The names a request's Host header may carry (any IP address may be there too, see
    `cnnlab.ui.app.HostCheck`): the loopback names, the host listened on and, listening on every
    interface (0.0.0.0, ::), this machine's name."""
    names = [*LOOPBACK_NAMES, host.strip("[]").lower()]
    if host in ("0.0.0.0", "::", ""):
        machine = socket.gethostname()
        names += [machine, socket.getfqdn(machine)]
    return list(dict.fromkeys(name.lower() for name in names if name))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: any free port); a clear error when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        taken = exc.errno == errno.EADDRINUSE
        raise ConfigError(Problem("--port" if taken else "--host", port if taken else host,
                                  f"cannot be used: {exc.strerror}")) from None
    sock.listen(128)
    return sock


def serve(source: Source, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          announce: Callable[[str], None] = print) -> None:
    """Serve the dashboard over ``source`` until interrupted; ``announce`` gets the address lines."""
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    announce(f"cnnlab ui: http://{shown}:{bound_port}/ on {source.shown} (read-only)")
    if host.strip("[]") in LOOPBACK_NAMES:
        announce(f"listening on {host} only: this machine can open it, others cannot (--host to change)")
    else:
        announce(f"listening on {host}: anyone who reaches this machine can read the runs")
    hosts = allowed_hosts(host)
    announce(f"answering requests addressed to {', '.join(hosts)} or an IP address (other names get 400)")
    config = uvicorn.Config(create_app(source, hosts), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        source.store.close()

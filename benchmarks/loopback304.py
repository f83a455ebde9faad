"""Not a benchmark: a loopback server that answers every GET with a 304, and the service's fetch
set up against it, for the scripts that time the fetch alone (``header_lines.py``,
``tls_cost.py``).

The server is an aiohttp child process (spawned, stopped by its pid) on 127.0.0.1 …
127.0.0.``hosts``, one port, over plain HTTP or TLS; each answer carries the headers it is given,
and over TLS an ``X-Resumed`` header saying whether the connection resumed a session (the
server's ``session_reused``), so a script can tell what its handshakes were.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import free_port
from run import REPO  # also puts this checkout's src/ first on sys.path

if TYPE_CHECKING:
    from feedwatch.fetch import FetchConfig
    from feedwatch.fetch.guard import AddressPolicy

__all__ = ["REPO", "service_fetch", "serving"]


def _serve(port: int, headers: dict[str, str], tls: tuple[str, str] | None, hosts: int) -> None:
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        session = request.transport.get_extra_info("ssl_object") if request.transport else None
        resumed = {"X-Resumed": str(int(session.session_reused))} if session is not None else {}
        return web.Response(status=304, headers={**headers, **resumed})

    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
    app = web.Application()
    app.router.add_get("/{name}", answer)
    addresses = [f"127.0.0.{k}" for k in range(1, hosts + 1)]
    web.run_app(app, host=addresses, port=port, ssl_context=context, print=None, access_log=None)


def _listening(address: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((address, port)) == 0


@contextmanager
def serving(
    headers: Mapping[str, str], tls: tuple[Path, Path] | None = None, hosts: int = 1
) -> Iterator[int]:
    """The server answering with ``headers`` (over TLS with ``tls``: certificate, key) while
    the block runs; yields its port. It is up once its last address accepts connections (the
    addresses start in order)."""
    port = free_port()
    certificate = (str(tls[0]), str(tls[1])) if tls is not None else None
    args = (port, dict(headers), certificate, hosts)
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=args, daemon=True)
    server.start()
    assert server.pid is not None
    try:
        deadline = time.monotonic() + 10
        while not _listening(f"127.0.0.{hosts}", port):
            if not server.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the 304 server did not start on port {port} ({hosts} addresses)")
            time.sleep(0.05)
        yield port
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.join(5)


def service_fetch() -> tuple[FetchConfig, AddressPolicy]:
    """The fetch's configuration and address policy from the service's settings, with loopback
    allowed and no per-host limit or pacing (every request here goes to one server)."""
    from feedwatch.fetch import FetchConfig
    from feedwatch.fetch.guard import AddressPolicy
    from feedwatch.settings import Settings

    settings = Settings(allow_private_networks=True, per_host_concurrency=50, per_host_min_gap_seconds=0)
    return FetchConfig.from_settings(settings), AddressPolicy.from_settings(settings)

"""What TLS costs the service's fetch: CPU a request over plain HTTP and HTTPS, on a kept
connection and on a new one, with and without TLS session resumption.

The farm speaks plain HTTP on kept connections; a deployment's feeds are mostly HTTPS, and a
host whose feeds fall due minutes apart gets a new connection per poll (connections are kept
15 s). The fetch keeps one libcurl multi handle per process across batches, and since libcurl
8.12 the transfers of a multi handle share its TLS session cache, so a new connection to a host
this process spoke to before should resume its session rather than pay a full handshake
(round 42 in docs/performance-history.md):

    .venv/bin/python benchmarks/tls_cost.py [--rounds 3] [--batches 20] [--key rsa|ec]

A loopback aiohttp server (a child process, stopped by its pid) answers every GET with a 304,
over plain HTTP or over TLS with a self-signed certificate for 127.0.0.1 made for the run
(``openssl``), which the fetch trusts through ``SSL_CERT_FILE``. The ways, alternated
``--rounds`` times, each timing ``--batches`` conditional GETs one after another, each a batch
of its own (``fetch_all`` of one request), on this process's CPU clock:

- ``http_kept`` / ``https_kept``: the connections kept between requests (as the farm);
- ``http_new`` / ``https_resumed``: the server closes each connection after its answer
  (``Connection: close``), so every request opens one; over TLS the multi handle's session
  cache lets it resume;
- ``https_full``: as ``https_resumed``, but the process's fetch sessions (multi handles) are
  dropped before each batch, so no session is there to resume: a full handshake a request.

A real server's chain is two or three certificates where this one is one, so a full
handshake's verification here is the cheapest it can be. Prints one JSON object: µs a request
by way and round, the means, and each way's mean over ``http_kept``'s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import free_port, wait_listening
from run import REPO  # also puts this checkout's src/ first on sys.path

#: Requests a batch: one, so that each new connection can resume the session the one before it
#: left (a TLS 1.3 server hands out two tickets a connection, each good for one resumption: a
#: batch of 100 new connections to one host resumed two of them). One at a time is also how a
#: deployment meets a host whose feeds fall due minutes apart.
BATCH = 1
WAYS = ("http_kept", "http_new", "https_kept", "https_resumed", "https_full")


def make_certificate(directory: Path, key: str) -> tuple[Path, Path]:
    """A self-signed certificate for the IP address 127.0.0.1, and its key."""
    cert, private = directory / "cert.pem", directory / "key.pem"
    kind = (
        ["-newkey", "rsa:2048"]
        if key == "rsa"
        else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    )
    subprocess.run(
        ["openssl", "req", "-x509", *kind, "-nodes", "-keyout", str(private), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, private


def serve(port: int, close: bool, cert: str | None, private: str | None) -> None:
    from aiohttp import web

    headers = {"ETag": '"e1"', **({"Connection": "close"} if close else {})}

    async def answer(_request: web.Request) -> web.Response:
        return web.Response(status=304, headers=headers)

    context = None
    if cert and private:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, private)
    app = web.Application()
    app.router.add_get("/{name}", answer)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, print=None, access_log=None)


def drop_sessions() -> None:
    """Close this process's fetch sessions (multi handles): their connections and TLS sessions."""
    from feedwatch.fetch import client

    for session in list((client._SESSIONS.sessions or {}).values()):
        client._SESSIONS.discard(session)


def cpu_a_request(way: str, batches: int, cert: Path, private: Path) -> float:
    from feedwatch.fetch import FetchRequest, FetchResult
    from feedwatch.fetch.client import fetch_all
    from feedwatch.pipeline import Context
    from feedwatch.settings import Settings

    settings = Settings(allow_private_networks=True, per_host_concurrency=50, per_host_min_gap_seconds=0)
    ctx = Context(settings=settings)
    tls = way.startswith("https")
    port = free_port()
    args = (
        port,
        way != "http_kept" and way != "https_kept",
        str(cert) if tls else None,
        str(private) if tls else None,
    )
    server = multiprocessing.get_context("spawn").Process(target=serve, args=args, daemon=True)
    server.start()
    try:
        wait_listening(port)
        scheme = "https" if tls else "http"
        requests = [
            FetchRequest(url=f"{scheme}://127.0.0.1:{port}/f{i}.xml", etag='"e1"', key=i)
            for i in range(BATCH)
        ]
        drop_sessions()
        for _ in range(2):  # a session to resume, caches warm
            fetch_all(requests, ctx.fetch_config, ctx.address_policy)
        spent = 0.0
        for _ in range(batches):
            if way == "https_full":
                drop_sessions()  # untimed: closing the handles is not the handshake's cost
            started = time.process_time()
            results = fetch_all(requests, ctx.fetch_config, ctx.address_policy)
            spent += time.process_time() - started
            failed = [r for r in results if not isinstance(r, FetchResult) or not r.not_modified]
            if failed:
                raise RuntimeError(f"{way}: not a 304: {failed[0]!r}")
        return spent / (batches * BATCH) * 1e6
    finally:
        drop_sessions()
        assert server.pid is not None
        os.kill(server.pid, signal.SIGTERM)
        server.join(5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batches", type=int, default=500, help="timed requests (batches of one) a way a round"
    )
    parser.add_argument(
        "--key", choices=("rsa", "ec"), default="rsa", help="the certificate's key: RSA 2048 or P-256"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fw-tls-") as tmp:
        cert, private = make_certificate(Path(tmp), args.key)
        # Read when the fetch is imported (``client._CA``): set before any import of it.
        os.environ["SSL_CERT_FILE"] = str(cert)
        os.environ.pop("SSL_CERT_DIR", None)
        runs: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way in WAYS:
                runs[way].append(round(cpu_a_request(way, args.batches, cert, private), 1))
    means = {way: round(statistics.fmean(values), 1) for way, values in runs.items()}
    result: dict[str, Any] = {
        "repo": str(REPO),
        "key": args.key,
        "requests_a_way_a_round": args.batches * BATCH,
        "us_a_request": runs,
        "means": means,
        "ratio_to_http_kept": {way: round(mean / means["http_kept"], 2) for way, mean in means.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

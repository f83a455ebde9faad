"""What TLS costs the service's fetch: CPU a request over plain HTTP and HTTPS, on a kept
connection and on a new one, with and without TLS session resumption.

The farm speaks plain HTTP on kept connections; a deployment's feeds are mostly HTTPS, and a
host whose feeds fall due minutes apart gets a new connection per poll (connections are kept
15 s). The fetch keeps one libcurl multi handle per process across batches, and since libcurl
8.12 the transfers of a multi handle share its TLS session cache, so a new connection to a host
this process spoke to before should resume its session rather than pay a full handshake
(round 42 in docs/performance-history.md):

    .venv/bin/python benchmarks/tls_cost.py [--rounds 3] [--batches 20] [--key rsa|ec]

A loopback server (``loopback304.py``: an aiohttp child, stopped by its pid) answers every GET
with a 304,
over plain HTTP or over TLS with a self-signed certificate for 127.0.0.1 made for the run
(``openssl``), which the fetch trusts through ``SSL_CERT_FILE``. The ways, alternated
``--rounds`` times, each timing ``--batches`` conditional GETs one after another, each a batch
of its own (``fetch_all`` of one request), on this process's CPU clock:

- ``http_kept`` / ``https_kept``: the connections kept between requests (as the farm);
- ``http_new`` / ``https_resumed``: the server closes each connection after its answer
  (``Connection: close``), so every request opens one; over TLS the multi handle's session
  cache lets it resume;
- ``https_full``: as ``https_resumed``, but the process's fetch sessions (multi handles) are
  dropped before each batch, so no session is there to resume: a full handshake a request;
- ``https_hosts``: as ``https_resumed``, the requests taking ``--hosts`` loopback addresses in
  turn (127.0.0.1 … 127.0.0.100 by default), more than the 25 hosts whose sessions a libcurl
  multi handle is said to keep: a process polling many hosts, each again only after the others.

The server says of each TLS answer whether its session was resumed (``session_reused``), and
the output gives each way's share of resumed requests, so a figure says what it measured.

A real server's chain is two or three certificates where this one is one, so a full
handshake's verification here is the cheapest it can be. The trust store is that certificate
alone; ``--ca system`` appends it to the system's CA bundle (~150 certificates), as a
deployment's store is: libcurl reads the store once a multi handle and keeps it (its CA cache),
so only ``https_full``, which drops the handles, pays the read again (~4 ms a request, round 43).

Prints one JSON object: µs a request by way and round, the means, and each way's mean over
``http_kept``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback304 import REPO, service_fetch, serving

#: Requests a batch: one, so that each new connection can resume the session the one before it
#: left (a TLS 1.3 server hands out two tickets a connection, each good for one resumption: a
#: batch of 100 new connections to one host resumed two of them). One at a time is also how a
#: deployment meets a host whose feeds fall due minutes apart.
BATCH = 1
WAYS = ("http_kept", "http_new", "https_kept", "https_resumed", "https_full", "https_hosts")
#: Loopback addresses ``https_hosts`` takes in turn (``--hosts``), and the certificate names.
HOSTS = 100


def make_certificate(directory: Path, key: str, hosts: int) -> tuple[Path, Path]:
    """A self-signed certificate for the addresses 127.0.0.1 … 127.0.0.``hosts``, and its key."""
    cert, private = directory / "cert.pem", directory / "key.pem"
    names = ",".join(f"IP:127.0.0.{k}" for k in range(1, hosts + 1))
    kind = (
        ["-newkey", "rsa:2048"]
        if key == "rsa"
        else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    )
    subprocess.run(
        ["openssl", "req", "-x509", *kind, "-nodes", "-keyout", str(private), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", f"subjectAltName={names}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, private


def drop_sessions() -> None:
    """Close this process's fetch sessions (multi handles): their connections and TLS sessions."""
    from feedwatch.fetch import client

    for session in list((client._SESSIONS.sessions or {}).values()):
        client._SESSIONS.discard(session)


def cpu_a_request(
    way: str, batches: int, certificate: tuple[Path, Path], hosts: int
) -> tuple[float, float | None]:
    """CPU µs a request this way, and the share of its TLS answers whose session was resumed."""
    from feedwatch.fetch import FetchRequest, FetchResult, fetch_all

    config, policy = service_fetch()
    tls = way.startswith("https")
    headers = {"ETag": '"e1"'} if way.endswith("_kept") else {"ETag": '"e1"', "Connection": "close"}
    if way != "https_hosts":
        hosts = 1
    with serving(headers, certificate if tls else None, hosts) as port:
        scheme = "https" if tls else "http"
        batches_of = [
            [
                FetchRequest(url=f"{scheme}://127.0.0.{h + 1}:{port}/f{i}.xml", etag='"e1"', key=i)
                for i in range(BATCH)
            ]
            for h in range(hosts)
        ]
        drop_sessions()
        try:
            for _ in range(2):  # a session to resume, caches warm
                for requests in batches_of:
                    fetch_all(requests, config, policy)
            spent, resumed, answers = 0.0, 0, 0
            for k in range(batches):
                if way == "https_full":
                    drop_sessions()  # untimed: closing the handles is not the handshake's cost
                started = time.process_time()
                results = fetch_all(batches_of[k % hosts], config, policy)
                spent += time.process_time() - started
                for result in results:
                    if not isinstance(result, FetchResult) or not result.not_modified:
                        raise RuntimeError(f"{way}: not a 304: {result!r}")
                    if "x-resumed" in result.headers:
                        answers += 1
                        resumed += result.headers["x-resumed"] == "1"
        finally:
            drop_sessions()
    return spent / (batches * BATCH) * 1e6, (round(resumed / answers, 3) if answers else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--hosts", type=int, default=HOSTS, help="addresses https_hosts takes in turn (2-250)"
    )
    parser.add_argument(
        "--batches", type=int, default=500, help="timed requests (batches of one) a way a round"
    )
    parser.add_argument(
        "--key", choices=("rsa", "ec"), default="rsa", help="the certificate's key: RSA 2048 or P-256"
    )
    parser.add_argument(
        "--ca",
        choices=("self", "system"),
        default="self",
        help="the trust store: the run's certificate alone, or the system's CA bundle with it appended",
    )
    args = parser.parse_args(argv)
    if not 2 <= args.hosts <= 250:
        parser.error("--hosts: 2 to 250")
    with tempfile.TemporaryDirectory(prefix="fw-tls-") as tmp:
        certificate = make_certificate(Path(tmp), args.key, args.hosts)
        trusted = certificate[0]
        if args.ca == "system":
            system = ssl.get_default_verify_paths().cafile
            if not system or not os.path.isfile(system):
                parser.error("--ca system: this machine has no CA bundle file")
            trusted = Path(tmp) / "bundle.pem"
            trusted.write_bytes(Path(system).read_bytes() + certificate[0].read_bytes())
        # Read when the fetch is imported (``client._CA``): set before any import of it.
        os.environ["SSL_CERT_FILE"] = str(trusted)
        os.environ.pop("SSL_CERT_DIR", None)
        runs: dict[str, list[float]] = {way: [] for way in WAYS}
        shares: dict[str, list[float]] = {way: [] for way in WAYS if way.startswith("https")}
        for _ in range(args.rounds):
            for way in WAYS:
                cpu, share = cpu_a_request(way, args.batches, certificate, args.hosts)
                runs[way].append(round(cpu, 1))
                if share is not None:
                    shares[way].append(share)
    means = {way: round(statistics.fmean(values), 1) for way, values in runs.items()}
    result: dict[str, Any] = {
        "repo": str(REPO),
        "key": args.key,
        "ca": args.ca,
        "requests_a_way_a_round": args.batches * BATCH,
        "us_a_request": runs,
        "means": means,
        "ratio_to_http_kept": {way: round(mean / means["http_kept"], 2) for way, mean in means.items()},
        "resumed_share": {way: round(statistics.fmean(v), 3) if v else None for way, v in shares.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The fetch over TLS against a loopback HTTPS server whose certificate a test CA signed.

The server's certificate is verified: against the system's CA store it is a ``tls`` failure,
and with the test CA named in ``SSL_CERT_FILE`` (how an operator adds a private CA) the same
fetch succeeds. The second case runs in a child process, because the CA paths are read once,
when the fetcher is imported.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from support.fetching import fetch_config
from support.services import FeedServer, Route

from feedwatch.fetch import AddressPolicy, FetchError, FetchRequest, fetch_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FEED = b"<rss version='2.0'><channel><title>tls</title></channel></rss>"
TESTS = Path(__file__).resolve().parents[1]  # the child imports the suite's fetch_config


@dataclass
class TlsServer:
    port: int
    ca_file: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/feed"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    srv = FeedServer()  # plain HTTP, its listening socket wrapped in TLS before it serves
    srv.httpd.socket = context.wrap_socket(srv.httpd.socket, server_side=True)
    srv.routes["/feed"] = Route(body=FEED, content_type="application/rss+xml")
    srv.start()
    yield TlsServer(srv.port, ca_file)
    srv.stop()


def test_an_untrusted_certificate_is_a_tls_failure(server: TlsServer) -> None:
    policy = AddressPolicy(allowed=frozenset({("127.0.0.1", server.port)}))
    (outcome,) = fetch_all([FetchRequest(server.url)], fetch_config(), policy)
    assert isinstance(outcome, FetchError), outcome
    assert outcome.error_class == "tls", outcome.message


CHILD = """
import json, sys
sys.path.insert(0, sys.argv[3])
from support.fetching import fetch_config
from feedwatch.fetch import AddressPolicy, FetchRequest, FetchResult, fetch_all
url, port = sys.argv[1], int(sys.argv[2])
policy = AddressPolicy(allowed=frozenset({("127.0.0.1", port)}))
(outcome,) = fetch_all([FetchRequest(url)], fetch_config(), policy)
ok = isinstance(outcome, FetchResult)
body = outcome.body.decode() if ok else None
print(json.dumps({"ok": ok, "body": body, "error": None if ok else repr(outcome)}))
"""


def test_a_ca_named_in_ssl_cert_file_is_trusted(server: TlsServer) -> None:
    env = {**os.environ, "SSL_CERT_FILE": str(server.ca_file)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, server.url, str(server.port), str(TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["ok"], answer["error"]
    assert answer["body"] == FEED.decode()

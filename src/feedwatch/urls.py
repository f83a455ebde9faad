"""What the URL code of several modules shares: each scheme's default port, and when a port
written in a URL is written back as it is.

Two fast paths take a "plain" URL as it is written instead of handing it to a library:
:func:`feedwatch.normalize.canonical_url` (w3lib's canonical form) and
:func:`feedwatch.fetch.guard.validate_text` (yarl's writing). Both libraries drop a port that is
the scheme's default and refuse one past 65535, so neither fast path may take such a URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

DEFAULT_PORTS: Final[Mapping[str, int]] = {"http": 80, "https": 443}


def kept_port(scheme: str, written: str | None) -> int | None:
    """The port an http(s) URL with this ``written`` port (its digits, or None) connects to,
    where the URL libraries write that port back as it is: none written (the scheme's
    default), or one in range that is not the default. None where they would not."""
    if written is None:
        return DEFAULT_PORTS[scheme]
    port = int(written)
    return port if port <= 65535 and port != DEFAULT_PORTS[scheme] else None

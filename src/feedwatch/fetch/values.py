"""The values the fetcher takes and returns: plain frozen dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from feedwatch.immutable import immutable

if TYPE_CHECKING:
    from feedwatch.fetch.body import SpilledBody
    from feedwatch.settings import Settings


@dataclass(frozen=True)
class FetchConfig:
    """Limits for one batch; every field has a ``FEEDWATCH_*`` setting (see docs/fetching.md)."""

    user_agent: str
    connect_timeout: float
    read_timeout: float
    deadline: float
    max_bytes: int
    max_redirects: int
    concurrency: int
    per_host: int
    per_host_min_gap: float = 0.0  # seconds between two requests to one host, in this process

    def __post_init__(self) -> None:
        # A zero here would not fail loudly: Semaphore(0) waits forever, timeout 0 fails all.
        for name in ("connect_timeout", "read_timeout", "deadline", "max_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FetchConfig.{name} must be positive")
        if self.per_host_min_gap < 0:
            raise ValueError("FetchConfig.per_host_min_gap must not be negative")
        if self.concurrency < 1 or self.per_host < 1 or self.max_redirects < 0:
            raise ValueError("FetchConfig: concurrency and per_host >= 1, max_redirects >= 0")

    @classmethod
    def from_settings(cls, s: Settings) -> FetchConfig:
        return cls(
            user_agent=s.user_agent,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            deadline=s.fetch_deadline,
            max_bytes=s.max_body_bytes,
            max_redirects=s.max_redirects,
            concurrency=s.fetch_concurrency,
            per_host=s.per_host_concurrency,
            per_host_min_gap=s.per_host_min_gap_seconds,
        )


@immutable
class FetchRequest:
    """One feed to fetch; ``key`` is the caller's id (feed id), passed through untouched."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    key: int | str | None = None


@immutable
class Redirect:
    """One hop followed; later code adopts ``target`` when a feed keeps answering 301/308."""

    status: int
    source: str
    target: str


@immutable
class FetchResult:
    """A successful fetch: 200 with a body, or 304 (``not_modified``, empty body).

    A body fetched past the batch's memory bound (``fetch_all``'s ``hold_bytes``) is in
    ``spilled``, a temporary file, and ``body`` is empty until :meth:`loaded`.
    """

    request: FetchRequest
    url: str
    status: int
    not_modified: bool
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    redirects: tuple[Redirect, ...] = ()
    elapsed: float = 0.0
    wire_bytes: int = 0
    spilled: SpilledBody | None = None

    @property
    def size(self) -> int:
        """The body's length, in memory or in its file."""
        return self.spilled.size if self.spilled is not None else len(self.body)

    def loaded(self) -> FetchResult:
        """This result with its body in memory: a spilled body is read back and its file closed."""
        if self.spilled is None:
            return self
        return replace(self, body=self.spilled.read(), spilled=None)

    @property
    def permanent_redirect(self) -> str | None:
        """The new URL when every hop followed was permanent (301/308), else ``None``."""
        if self.redirects and all(r.status in (301, 308) for r in self.redirects):
            return self.redirects[-1].target
        return None

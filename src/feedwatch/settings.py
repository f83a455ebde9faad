"""Settings: one pydantic-settings class, read when called, never at import.

Every setting has a default that works for the embedded mode (``feedwatch run`` with no servers)
and an environment name ``FEEDWATCH_<NAME>``; a ``.env`` file in the working directory is read too.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feedwatch import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_CONFIG_DIR = PACKAGE_DIR.parent.parent / "config"
#: The broker's queues (workers.app routes to them; ``feedwatch status`` counts them): poll
#: batches, alert deliveries, beat's ticks, full-text pages, the database upkeep.
QUEUES = ("feeds", "alerts", "default", "articles", "upkeep")


def _default_config_file(name: str) -> Path:
    """The file under ``./config`` if present, else the copy shipped inside the package."""
    local = Path("config") / name
    if local.exists():
        return local
    if (REPO_CONFIG_DIR / name).exists():
        return REPO_CONFIG_DIR / name
    return PACKAGE_DIR / "defaults" / name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FEEDWATCH_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(default=Path("var"), description="Data directory (SQLite, broker, alerts).")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in home.")
    broker_url: str = Field(default="filesystem://", description="Celery broker URL.")
    feeds_file: Path = Field(default_factory=lambda: _default_config_file("feeds.toml"))
    rules_file: Path = Field(default_factory=lambda: _default_config_file("rules.toml"))
    allow_private_networks: bool = False

    # scheduling
    # A due feed waits at most a tick to be claimed, and a tick's feeds reach the workers as one
    # burst: the period counts twice in due→alert latency. At 1,000 polls/s on a slow machine of
    # two cores, p95 due→delivered: 1 s tick 1.6–2.2 s, 0.5 s 0.75–0.81 s, 0.25 s 0.43–0.98 s
    # but ~12 % fewer polls/s at capacity (docs/performance-history.md, round 10).
    tick_seconds: float = Field(default=0.5, gt=0, description="Seconds between ticks that claim due feeds.")
    sweep_seconds: float = Field(
        default=1.0,
        gt=0,
        description="The tick re-sends lost alert and full-text messages at most this often.",
    )
    db_upkeep_seconds: float = Field(
        default=60.0,
        ge=0,
        description=(
            "This often (0: never): delete the story keys of stories past the story window; where"
            " PostgreSQL's autovacuum is off, do what it would: VACUUM and ANALYZE the tables whose"
            " changes passed autovacuum's thresholds (the server's, or a table's own)."
        ),
    )
    default_interval_minutes: float = Field(default=10.0, gt=0)
    claim_lease_seconds: int = Field(
        default=300,
        gt=0,
        description="A claimed feed is re-due after this if its poll never reports.",
    )
    # Above what the workers can poll in a tick (two cores: ~2,000/s by 2026-11-30), so the tick
    # is never the bound; the lease, not this, keeps an overloaded service from polling twice.
    claim_batch: int = Field(default=5000, gt=0, description="Most feeds claimed by one tick.")
    poll_round_share: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description=(
            "A feed on the same origin (scheme, host, port) as a due feed is polled with it when"
            " it falls due within this share of its current interval (and within"
            " poll_round_seconds): the origin's feeds then share one connection, one TLS"
            " handshake. 0 turns it off (docs/polling.md, Rounds)."
        ),
    )
    poll_round_seconds: float = Field(
        default=60.0, ge=0, description="The most a feed is polled early to join its origin's round."
    )
    # 200, not 100 (round 54 in docs/performance-history.md): a message's fixed cost (Celery's
    # consumer and pool, the batch's read, transaction and publishes) is spread over twice the
    # feeds; the feeds worker's main process took 13-17 µs a poll at 100, 8-10 at 200. The byte
    # bound below still cuts a batch of large or never-fetched feeds (64 KiB each: 128 a
    # message), and ``pipeline.origin_most`` one origin's feeds past what its pacing starts in time.
    poll_batch_size: int = Field(default=200, gt=0, description="Feed ids per poll_feed message, at most.")
    poll_batch_bytes: int = Field(
        default=8 << 20,
        gt=0,
        description=(
            "Feed body bytes a poll batch holds, at most: the tick gives a poll_feed message"
            " fewer feeds when their last bodies add up to more, and the fetch keeps the bodies"
            " past it in unnamed temporary files (TMPDIR) until their part is parsed"
            " (poll_part_bytes). A feed larger than this is a batch of its own."
        ),
    )
    # 2 MiB, under the batch's 8: a worker's peak memory follows what one transaction parses
    # and stores (its parsed entries and drafts, ~3-5x the bodies), and a 304 or an unchanged
    # body parses nothing (round 55 in docs/performance-history.md).
    poll_part_bytes: int = Field(
        default=2 << 20,
        gt=0,
        description=(
            "Body bytes a worker parses and stores in one transaction, at most: a poll batch's"
            " changed bodies (not a 304, not the same bytes as last time) past this are parsed"
            " and stored in parts, one after another. A feed larger than this is a part of its own."
        ),
    )
    poll_synchronous_commit: bool = Field(
        default=False,
        description=(
            "PostgreSQL: a poll batch's commit waits until its WAL is on disk. Off, a crash of the"
            " database's host can take back the last ~0.6 s of poll batches, which are polled"
            " again (docs/decisions.md, docs/reliability.md)."
        ),
    )
    poll_min_batches: int = Field(
        default=4,
        gt=0,
        description=(
            "A tick splits its due feeds into at least this many poll messages (when it has that"
            " many feeds), so every feeds-worker process gets a share: at least their number."
        ),
    )
    alert_batch_size: int = Field(
        default=100,
        gt=0,
        description=(
            "Alert ids per deliver_alert message (at most). A message's alerts share two"
            " transactions and, on channels that send many at once (JSONL, Redis stream), one"
            " send; a channel that sends one at a time sends them in turn, within half the"
            " delivery lease."
        ),
    )
    alert_requeue_seconds: int = Field(
        default=60,
        gt=0,
        description="A queued alert not delivered after this is re-sent by the tick's sweep.",
    )

    # fetching
    user_agent: str = f"feedwatch/{__version__} (+https://github.com/feedwatch/feedwatch)"
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    fetch_deadline: float = Field(
        default=30.0, gt=0, description="Total seconds for one fetch, all redirects included."
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    fetch_concurrency: int = Field(default=50, gt=0)
    per_host_concurrency: int = Field(default=4, gt=0)
    per_host_min_gap_seconds: float = Field(
        default=0.5, ge=0, description="Least time between two requests to one host (politeness)."
    )

    # WebSub push (feedwatch.websub); an empty callback URL turns it off
    websub_callback_url: str = Field(
        default="", description="Public base URL of `feedwatch websub serve`; empty: WebSub off."
    )
    websub_listen: str = Field(default="127.0.0.1:8088", description="host:port websub serve binds.")
    websub_lease_seconds: int = Field(default=86400 * 5, gt=0, description="Lease asked of hubs.")

    # worker
    worker_concurrency: int = Field(default=2, gt=0)
    task_soft_time_limit: int = Field(default=120, gt=0)
    task_hard_time_limit: int = Field(default=150, gt=0)
    visibility_timeout: int = Field(default=3600, gt=0)
    # A pool child peaks near 190 MB (the 200 MB target; docs/performance.md). Python keeps what
    # it freed, so a child that once held a batch past that (a first poll of many large feeds:
    # ~295 MB) would keep it for good; past this peak it is replaced after its task.
    worker_max_memory_per_child_kb: int = Field(
        default=250_000,
        gt=0,
        description="A worker pool child whose peak RSS passed this (KiB) is replaced after its task.",
    )
    task_events: bool = Field(
        default=False,
        description="Workers publish task events (celery events); Flower turns them on while it runs.",
    )

    # alerts
    alert_channels: str = Field(default="console,jsonl", description="Comma-separated channel names.")
    alerts_file: Path | None = Field(
        default=None, description="JSONL channel file; default home/alerts.jsonl."
    )
    delivery_lease_seconds: int = Field(
        default=120,
        gt=0,
        description="A delivery claimed by a worker that died is sent again after this.",
    )
    channels_file: Path | None = Field(
        default=None,
        description="TOML channel list (docs/alerts.md); unset: FEEDWATCH_ALERT_CHANNELS applies.",
    )
    story_window_hours: float = Field(default=48.0, gt=0, description="Syndicated copies join within this.")
    story_similarity: float = Field(
        default=0.6, gt=0, le=1, description="Estimated Jaccard of word 3-shingles for one story."
    )
    digest_check_seconds: float = Field(
        default=60.0, gt=0, description="Beat period of send_digests (digests and burst summaries)."
    )

    # full text (feedwatch.extract; docs/full-text.md)
    article_max_bytes: int = Field(
        default=2 * 1024 * 1024, gt=0, description="Cap on an article page, after decompression."
    )
    extract_time_limit: float = Field(
        default=5.0, gt=0, description="Seconds trafilatura may spend on one page before the fallback."
    )
    article_batch_size: int = Field(default=10, gt=0, description="Article ids per fetch_article message.")
    article_requeue_seconds: int = Field(
        default=600,
        gt=0,
        description="A candidate not extracted after this is re-sent by the tick's sweep (lost message).",
    )

    # operations
    beat_late_seconds: float = Field(default=60.0, gt=0)
    alert_backlog_seconds: float = Field(default=300.0, gt=0)
    log_level: str = "INFO"
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    metrics_port: int = 9808

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.home / 'feedwatch.db').resolve()}"
        if self.alerts_file is None:
            self.alerts_file = self.home / "alerts.jsonl"
        if self.task_hard_time_limit <= self.task_soft_time_limit:
            raise ValueError("task_hard_time_limit must be greater than task_soft_time_limit")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_filesystem_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        return (self.home / "broker").resolve()

    @property
    def channel_names(self) -> list[str]:
        return [c.strip() for c in self.alert_channels.split(",") if c.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first call."""
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment)."""
    get_settings.cache_clear()

"""Logging: structlog everywhere, one renderer for our lines and for Celery's and the stdlib's.

JSON when stderr is not a terminal (deployment), pretty when it is. Context (the task's id and
name, its batch size, the article a full-text fetch works on) is bound through
``structlog.contextvars`` so every line of a unit of work carries it. A poll batch's lines about
one feed name it themselves (``feed_id``): binding it around each feed's steps cost ~2 % of a
feeds worker (round 19 in docs/performance-history.md).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from feedwatch.settings import Settings


def _renderer(fmt: str) -> Any:
    pretty = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    if pretty:
        return structlog.dev.ConsoleRenderer()
    return structlog.processors.JSONRenderer(ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    """Route structlog and stdlib logging through one formatter on stderr."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(settings.log_format),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("alembic", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

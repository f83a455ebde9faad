"""The channel list: ``FEEDWATCH_CHANNELS_FILE`` (TOML, see config/channels.example.toml).

Without the file, ``FEEDWATCH_ALERT_CHANNELS`` (default ``console,jsonl``) names built-in
channels with default routing, which is what the embedded mode runs on.

Secrets never live in the file: an Apprise URL (it carries tokens) comes only from the
environment variable named by ``url_env``, a webhook secret only from ``secret_env``. A
variable that is named but unset is a configuration error at start, not a failed delivery.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from feedwatch.channels.base import Every, Mode, Route
from feedwatch.channels.render import Format

Kind = Literal["console", "jsonl", "webhook", "apprise", "redis_stream"]


class ChannelConfigError(ValueError):
    """The channels file is invalid; the message names the file and the channel."""


class ChannelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    type: Kind
    topics: list[str] | None = None
    mode: Mode = "immediate"
    every: Every = "hourly"
    max_per_minute: int | None = Field(default=None, gt=0)
    format: Format | None = None
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None
    path: Path | None = None
    stream: str = "feedwatch:alerts"
    maxlen: int = Field(default=10_000, gt=0)
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ChannelConfig:
        if self.type == "apprise" and self.url:
            raise ValueError("apprise URLs carry secrets: set url_env, not url")
        if self.type in ("apprise", "webhook") and not (self.url or self.url_env):
            raise ValueError(f"a {self.type} channel needs url_env (or url for a webhook)")
        if self.url and self.url_env:
            raise ValueError("give url or url_env, not both")
        return self

    @property
    def route(self) -> Route:
        topics = frozenset(self.topics) if self.topics is not None else None
        return Route(topics=topics, mode=self.mode, every=self.every, max_per_minute=self.max_per_minute)

    def resolved_url(self) -> str | None:
        """The URL, read from the environment when ``url_env`` names it."""
        if self.url_env is None:
            return self.url
        value = os.environ.get(self.url_env, "").strip()
        if not value:
            raise ChannelConfigError(f"channel {self.name!r}: environment variable {self.url_env} is not set")
        return value

    def secret(self) -> bytes | None:
        if self.secret_env is None:
            return None
        value = os.environ.get(self.secret_env, "")
        if not value:
            raise ChannelConfigError(
                f"channel {self.name!r}: environment variable {self.secret_env} is not set"
            )
        return value.encode()


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channels: list[ChannelConfig]


def load_channel_configs(path: Path) -> list[ChannelConfig]:
    """Parse and validate the channels file; names must be unique (they key Delivery rows)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        configs = _File.model_validate(data).channels
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ChannelConfigError(f"{path}: {exc}") from exc
    names = [c.name for c in configs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ChannelConfigError(f"{path}: duplicate channel names {dupes}")
    return configs


def default_configs(names: list[str]) -> list[ChannelConfig]:
    """``FEEDWATCH_ALERT_CHANNELS`` as configs: built-in channels, all topics, immediate."""
    known = ("console", "jsonl")
    for name in names:
        if name not in known:
            raise ChannelConfigError(
                f"FEEDWATCH_ALERT_CHANNELS: unknown channel {name!r} (known: console, jsonl; "
                "configure others in FEEDWATCH_CHANNELS_FILE)"
            )
    return [ChannelConfig(name=n, type=n) for n in names]

"""Alert channels: where a delivered alert goes. Each channel talks to one thing.

A channel gets an ``AlertPayload`` (or a ``DigestPayload``) and either returns (sent) or raises
(the delivery is retried). Every payload carries ``idempotency_key`` so a receiver can drop the
repeat that at-least-once delivery allows (a crash after sending but before the send was
recorded). Each channel has a ``Route``: the topics it wants, immediate or digest, a rate limit.
Configuration: :mod:`feedwatch.channels.config`; formats and escaping: :mod:`.render`.
"""

from __future__ import annotations

from feedwatch.channels.base import (
    AlertPayload,
    Channel,
    ChannelError,
    Copy,
    DigestPayload,
    Route,
    TopicReason,
)
from feedwatch.channels.config import ChannelConfig, ChannelConfigError, default_configs, load_channel_configs
from feedwatch.channels.console import ConsoleChannel
from feedwatch.channels.jsonl import JsonlChannel
from feedwatch.settings import Settings


def build_channel(config: ChannelConfig, settings: Settings) -> Channel:
    """One channel from its configuration (secrets read from the environment here)."""
    route = config.route
    if config.type == "console":
        return ConsoleChannel(config.name, route)
    if config.type == "jsonl":
        path = config.path or settings.alerts_file
        assert path is not None  # settings derive a default
        return JsonlChannel(path, config.name, route)
    url = config.resolved_url()
    if config.type == "webhook":
        from feedwatch.channels.webhook import WebhookChannel
        from feedwatch.fetch import AddressPolicy

        assert url is not None
        policy = AddressPolicy.from_settings(settings)
        return WebhookChannel(config.name, url, config.secret(), policy, route, config.timeout)
    if config.type == "apprise":
        from feedwatch.channels.apprise_channel import AppriseChannel

        assert url is not None
        return AppriseChannel(config.name, url, config.format or "text", route)
    from feedwatch.channels.redis_stream import RedisStreamChannel

    return RedisStreamChannel(
        config.name, url or "redis://127.0.0.1:6379/0", config.stream, config.maxlen, route
    )


def channel_configs(settings: Settings) -> list[ChannelConfig]:
    if settings.channels_file is not None:
        return load_channel_configs(settings.channels_file)
    return default_configs(settings.channel_names)


def build_channels(settings: Settings) -> list[Channel]:
    """The channels of ``FEEDWATCH_CHANNELS_FILE``, else of ``FEEDWATCH_ALERT_CHANNELS``, in order."""
    return [build_channel(config, settings) for config in channel_configs(settings)]


__all__ = [
    "AlertPayload",
    "Channel",
    "ChannelConfig",
    "ChannelConfigError",
    "ChannelError",
    "ConsoleChannel",
    "Copy",
    "DigestPayload",
    "JsonlChannel",
    "Route",
    "TopicReason",
    "build_channel",
    "build_channels",
    "channel_configs",
]

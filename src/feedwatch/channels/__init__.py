"""Alert channels: where a delivered alert goes. Each channel talks to one thing.

A channel gets an ``AlertPayload`` and either returns (sent) or raises (the delivery is retried).
Every payload carries ``idempotency_key`` so a receiver can drop the repeat that at-least-once
delivery allows (a crash after sending but before the send was recorded).
"""

from __future__ import annotations

from feedwatch.channels.base import AlertPayload, Channel, ChannelError
from feedwatch.channels.console import ConsoleChannel
from feedwatch.channels.jsonl import JsonlChannel
from feedwatch.settings import Settings


def build_channels(settings: Settings) -> list[Channel]:
    """The channels named in ``FEEDWATCH_ALERT_CHANNELS``, in order."""
    channels: list[Channel] = []
    for name in settings.channel_names:
        if name == "console":
            channels.append(ConsoleChannel())
        elif name == "jsonl":
            assert settings.alerts_file is not None
            channels.append(JsonlChannel(settings.alerts_file))
        else:
            raise ValueError(f"FEEDWATCH_ALERT_CHANNELS: unknown channel {name!r} (known: console, jsonl)")
    return channels


__all__ = [
    "AlertPayload",
    "Channel",
    "ChannelError",
    "ConsoleChannel",
    "JsonlChannel",
    "build_channels",
]

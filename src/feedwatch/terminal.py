"""What every CLI command shares: the two consoles and settings with logging configured."""

from __future__ import annotations

from rich.console import Console

from feedwatch.settings import Settings, get_settings

out = Console()
err = Console(stderr=True)


def command_settings() -> Settings:
    """The settings, with logging configured for a command-line run."""
    from feedwatch.logs import configure_logging

    settings = get_settings()
    configure_logging(settings)
    return settings

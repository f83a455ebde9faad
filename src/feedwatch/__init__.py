"""feedwatch: news feed ingestion with multilingual keyword alerts."""

__version__ = "0.1.0"

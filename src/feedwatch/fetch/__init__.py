"""Fetch stage: guarded, bounded HTTP for feeds. The error tree is in :mod:`.errors`."""

from feedwatch.fetch.body import decode_body
from feedwatch.fetch.client import classify_curl, classify_exception, fetch_all, fetch_one
from feedwatch.fetch.errors import (
    ERROR_CLASSES,
    MAX_RETRY_AFTER,
    ErrorClass,
    FetchError,
    parse_retry_after,
)
from feedwatch.fetch.guard import AddressPolicy, check_url
from feedwatch.fetch.values import FetchConfig, FetchRequest, FetchResult, Redirect

__all__ = [
    "ERROR_CLASSES",
    "MAX_RETRY_AFTER",
    "AddressPolicy",
    "ErrorClass",
    "FetchConfig",
    "FetchError",
    "FetchRequest",
    "FetchResult",
    "Redirect",
    "check_url",
    "classify_curl",
    "classify_exception",
    "decode_body",
    "fetch_all",
    "fetch_one",
    "parse_retry_after",
]

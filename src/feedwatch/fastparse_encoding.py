"""The fast path's encoding rules: the UTF-8 bytes feedparser's expat would parse, or ``None``.

feedparser (``encodings.convert_to_utf8``) picks one encoding from the HTTP Content-Type, the
XML declaration and a BOM, decodes the whole document with Python's codec of that name, puts a
UTF-8 declaration in place of the document's own and hands expat the UTF-8 bytes. When that
first choice fails to decode it tries others and flags the feed (``CharacterEncodingOverride``);
a Content-Type that is not XML is flagged too (``NonXMLContentType``). Both make the feed bozo,
which the fast path never answers, so :func:`utf8_document` declines them, and declines what it
cannot be sure of: UTF-16/32 and EBCDIC, and a UTF-8 BOM before a declaration of another
encoding (feedparser then reads the declaration only if the rest happens to be valid UTF-8).

The encoding feedparser picks first (its ``rfc3023_encoding``; MIME types compared as given, not
lower-cased, as feedparser compares them):

* ``application/xml``, ``-dtd``, ``-external-parsed-entity`` and ``application/*+xml``: the
  charset, else the declaration, else UTF-8;
* ``text/xml``, ``text/xml-external-parsed-entity`` and ``text/*+xml``: the charset, else
  US-ASCII (the declaration is ignored, RFC 3023);
* any other type, or headers without a Content-Type: flagged;
* no response headers at all (a file): the declaration, else UTF-8.

gb2312 is read as gb18030. A UTF-8 document is handed to lxml as it is (the parser is told to
read UTF-8 whatever the declaration says, and rejects every byte sequence Python's codec
rejects); any other is decoded here with Python's codec, as feedparser decodes it, so lxml and
expat read the same characters. The UTF-8 mojibake repair feedparser runs on every value
afterwards (``mixin.pop``, whatever the document's encoding) stays the reader's business.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from functools import lru_cache

from feedparser.encodings import (
    EBCDIC_MARKER,
    RE_XML_DECLARATION,
    UTF16BE_MARKER,
    UTF16LE_MARKER,
    UTF32BE_MARKER,
    UTF32LE_MARKER,
    parse_content_type,
)

# Starts feedparser reads as UTF-16, UTF-32 or EBCDIC (a NUL first byte cannot be XML either).
_NOT_ASCII_BASED = (
    codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE, EBCDIC_MARKER, UTF16BE_MARKER, UTF16LE_MARKER,
    UTF32BE_MARKER, UTF32LE_MARKER, b"\x00",
)  # fmt: skip
_APPLICATION_XML = ("application/xml", "application/xml-dtd", "application/xml-external-parsed-entity")
_TEXT_XML = ("text/xml", "text/xml-external-parsed-entity")
_DECLARATION = "<?xml version='1.0' encoding='utf-8'?>"
_QUOTE = re.compile(rb"['\"]")


def utf8_document(body: bytes, headers: Mapping[str, str]) -> bytes | None:
    """``body`` as lxml should read it (as UTF-8) to see what feedparser's expat sees, or ``None``
    where feedparser would flag the encoding or this module is not sure.

    ``headers`` are the response headers with lower-case names, as feedparser receives them.
    """
    if body.startswith(_NOT_ASCII_BASED):
        return None
    bom = body.startswith(codecs.BOM_UTF8)
    data = body[3:] if bom else body
    declared = _declared(data)
    if declared is None or (bom and declared and _codec(declared) != "utf-8"):
        return None
    chosen = _first_choice(declared, headers)
    codec = _codec(chosen) if chosen else None
    if codec == "utf-8":
        return body
    if codec == "ascii":
        return data if data.isascii() else None
    if codec is None:
        return None
    try:
        text = data.decode(codec)
    except (UnicodeDecodeError, LookupError):  # LookupError: a codec that is not a text encoding
        return None
    if RE_XML_DECLARATION.search(text):
        text = RE_XML_DECLARATION.sub(_DECLARATION, text)
    else:
        text = f"{_DECLARATION}\n{text}"
    return text.encode("utf-8")


def _declared(data: bytes) -> str | None:
    """The XML declaration's encoding as feedparser finds it ("" for none), ``None`` where
    feedparser would fail on the name itself."""
    value = pi_encoding(data)
    if value is None:
        return ""
    try:
        return value.decode("utf-8").lower()
    except UnicodeDecodeError:
        return None  # feedparser raises on it


def pi_encoding(data: bytes) -> bytes | None:
    r"""What feedparser's ``RE_XML_PI_ENCODING.match(data)`` captures, found in linear time.

    The pattern, ``^<\?.*encoding=['"](.*?)['"].*\?>``, backtracks: on a first line with many
    ``encoding='`` and no ``?>`` after them it takes cubic time (13 KB: ~10 s; feedparser runs
    it on every document it parses). Its answer, on the first line: the last ``encoding=`` and
    quote with another quote after it that comes before the line's last ``?>``, and the value
    up to the first such quote.
    """
    if not data.startswith(b"<?"):
        return None
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    close = line.rfind(b"?>")
    if close < 0:
        return None
    last_quote = max(line.rfind(b"'", 0, close), line.rfind(b'"', 0, close))
    if last_quote < 0:
        return None
    at = line.rfind(b"encoding=", 2, last_quote - 1)  # ends by last_quote - 1: a value fits
    while at >= 0 and line[at + 9 : at + 10] not in (b"'", b'"'):
        at = line.rfind(b"encoding=", 2, at + 8)
    if at < 0:
        return None
    start = at + 10
    closing = _QUOTE.search(line, start)  # last_quote at the latest
    return line[start : closing.start()] if closing else None


def _first_choice(declared: str, headers: Mapping[str, str]) -> str | None:
    """feedparser's ``rfc3023_encoding``, or ``None`` where it flags the Content-Type."""
    if not headers:
        encoding = declared or "utf-8"
    elif "content-type" not in headers:
        return None
    else:
        mime, charset = parse_content_type(headers["content-type"] or "")
        if mime in _APPLICATION_XML or (mime.startswith("application/") and mime.endswith("+xml")):
            encoding = charset or declared or "utf-8"
        elif mime in _TEXT_XML or (mime.startswith("text/") and mime.endswith("+xml")):
            encoding = charset or "us-ascii"
        else:
            return None
    return "gb18030" if encoding.lower() == "gb2312" else encoding


@lru_cache(maxsize=256)
def _codec(name: str) -> str | None:
    """Python's canonical name of the codec ``name`` stands for, ``None`` for an unknown one."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None

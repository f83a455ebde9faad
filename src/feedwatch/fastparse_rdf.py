"""Fast path for RSS 1.0 (RDF): the sibling of :mod:`feedwatch.fastparse`'s RSS 2.0 reader.

:func:`read_rdf` takes the lxml tree of an ``<rdf:RDF xmlns="http://purl.org/rss/1.0/">``
document that :func:`feedwatch.fastparse.read` has checked (well-formed, decoded as feedparser
decodes it, no DOCTYPE) and answers what feedparser answers, or raises
:class:`~feedwatch.fastparse._Unsupported`. ``tests/unit/test_fastparse_rdf.py`` holds it to
feedparser on the real ORF feed, feedparser's own RDF tests and generated documents.

To feedparser RSS 1.0 is RSS 2.0 laid flat: elements in the RSS 1.0 namespace are read as if
they had none, the ``<channel>`` holds the feed's fields, and the ``<item>`` elements beside it
are entries read as RSS 2.0 items are (an item's ``rdf:about`` is its id). So once the namespace
is taken off, :class:`~feedwatch.fastparse._Reader` reads both. Beside them stand ``<image>``
and ``<textinput>`` blocks, and elements feedparser has no handler for.

What declines, beyond what the RSS 2.0 reader declines: a root whose namespaces would give
feedparser another version (Atom's, RSS 0.90's, or no RSS 1.0 namespace), attributes on the
root, and anything before the ``<channel>``: a title read before it (an item's, an image's)
hides the channel's from feedparser (its ``title_depth``), so the channel must come first.
"""

from __future__ import annotations

from typing import Any

from feedwatch.fastparse import (
    _BLOCK_CHILDREN,
    _LANG_OR_BASE,
    Fields,
    _check_block,
    _check_harmless,
    _Reader,
    _rename_to_local,
    _Unsupported,
)

_RSS10 = "http://purl.org/rss/1.0/"
# Namespaces that would make feedparser's version other than rss10 (``track_namespace``).
_OTHER_VERSIONS = frozenset({"http://www.w3.org/2005/atom", "http://my.netscape.com/rdf/simple/0.9/"})


def read_rdf(root: Any, content_language: str | None, author_cap: int) -> tuple[Fields, list[Fields]]:
    """feedparser's ``feed`` and ``entries`` for an ``rdf:RDF`` root, or :class:`_Unsupported`."""
    namespaces = {uri.lower() for uri in root.nsmap.values()}
    if _RSS10 not in namespaces or namespaces & _OTHER_VERSIONS:
        raise _Unsupported("RDF namespaces")
    if root.keys() or _LANG_OR_BASE(root):
        raise _Unsupported("attributes on rdf:RDF, xml:lang or xml:base")
    _rename_to_local(root, _RSS10)
    reader = _Reader(content_language, author_cap)
    children = iter(root)
    channel = next(children, None)
    if channel is None or channel.tag != "channel":
        raise _Unsupported("RDF without the channel first")
    feed, entries = reader.channel(channel)
    for child in children:
        tag = child.tag
        if tag == "item":
            entries.extend(reader.item(child))
        elif tag in _BLOCK_CHILDREN:
            _check_block(child)
        else:
            _check_harmless(child, frozenset())
    return feed, entries

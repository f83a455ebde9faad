"""Fast path for Atom 1.0: the sibling of :mod:`feedwatch.fastparse`'s RSS reader, same contract.

:func:`read_atom` takes the lxml tree of a ``<feed xmlns="http://www.w3.org/2005/Atom">``
document that :func:`feedwatch.fastparse.read` has already checked (well-formed, UTF-8, no
DOCTYPE, no ``xml:base``) and answers what feedparser answers for the fields parse.py keeps, or
raises :class:`~feedwatch.fastparse._Unsupported` and feedparser reads the document instead.
``tests/unit/test_fastparse_atom.py`` holds it to feedparser on real, corpus and generated feeds.

What feedparser does with Atom, as replicated here (``namespaces/_base.py``, ``mixin.pop``):

* The entry's link is the ``href`` of its last ``<link>`` with ``rel`` alternate (the default)
  and an HTML type (the default); without one, the ``<id>`` (feedparser treats an Atom id as a
  permalink guid). The feed's link likewise. The feed's ``links`` carry every ``<link>``'s
  ``rel`` (lower-cased) and ``href``.
* ``<summary>`` is the summary; ``<content>`` the content, and the summary when there is none.
  Text constructs of type ``text`` or ``html`` only: ``xhtml`` (feedparser re-serializes the
  markup) and other media types (base64) decline.
* A person's string is ``name (email)``, ``name`` or ``email``, their texts only stripped.
* ``xml:lang`` is inherited (``""`` clears it): on the root it is the feed's language, on a
  title or summary that entry's language. A Content-Language header is the default.

* An entry's ``<link>`` may hold media elements and a ``dc:title`` (BBC's feeds wrap a
  ``media:content`` of ``media:thumbnail`` images and the story's title in each link). With an
  ``href`` feedparser opens no element for the link, so its children land in the entry: the
  thumbnails under ``media_thumbnail``, their ``<img>`` under its own name, and the ``dc:title``
  as a title, which feedparser drops when a non-empty ``<title>`` of the entry came before it
  (``title_depth``: a title nested deeper than one already read is not kept). Any other child,
  a ``dc:title`` before the entry's title or after an empty one, and children of the feed's own
  links decline.

Anything else declines: ``<source>``, repeated fields, ``<link>`` without ``href``, elements
feedparser has a handler for that this module has not checked, markup inside text.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from feedparser.api import StrictFeedParser

from feedwatch.fastparse import (
    Fields,
    _check_harmless,
    _date,
    _no_attributes,
    _Reader,
    _relative_uri,
    _Unsupported,
)

_ATOM = "{http://www.w3.org/2005/Atom}"
_MEDIA_CONTENT = "{http://search.yahoo.com/mrss/}content"
_MEDIA_THUMBNAIL = "{http://search.yahoo.com/mrss/}thumbnail"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_TEXT_TYPES = frozenset({"text", "html", "text/plain", "text/html"})
_HTML_TYPES = StrictFeedParser.html_types
_PERSON_PARTS = {f"{_ATOM}name": "name", f"{_ATOM}email": "email", f"{_ATOM}uri": "uri"}
_LINK_ATTRIBUTES = frozenset({"rel", "href", "type", "title", "hreflang", "length", _XML_LANG})
_PLAIN = (_XML_LANG,)
# Fields read here, each at most once (feedparser's rules for a second one are subtle); what is
# skipped may repeat.
_ONCE = frozenset(
    f"{_ATOM}{name}" for name in ("title", "id", "summary", "content", "published", "updated", "author")
)
# Checked one by one against feedparser in the tests, as in fastparse (feedparser's names).
_HARMLESS_IN_FEED = frozenset(
    {"subtitle", "rights", "generator", "logo", "icon", "updated", "category"}
)  # fmt: skip
_HARMLESS_IN_ENTRY = frozenset(
    {"category", "rights", "media_thumbnail", "media_credit", "dc_subject", "slash_comments",
     "wfw_commentrss", "georss_point"}
)  # fmt: skip


def read_atom(root: Any, content_language: str | None) -> tuple[Fields, list[Fields]]:
    """feedparser's ``feed`` and ``entries`` for an Atom 1.0 root, or :class:`_Unsupported`."""
    header_lang = content_language.replace("_", "-") if content_language else None
    if any(name != _XML_LANG for name in root.attrib):
        raise _Unsupported("attributes on feed")
    declared = root.get(_XML_LANG)
    lang = _lang(root, header_lang)
    feed: Fields = {"links": []}
    if declared or header_lang:
        feed["language"] = declared.replace("_", "-") if declared else header_lang
    entries: list[Fields] = []
    seen: set[str] = set()
    for child in root:
        tag = child.tag
        name = _atom_name(tag)
        if name == "entry":
            entries.append(_entry(child, lang))
            continue
        if tag in _ONCE:
            if tag in seen:
                raise _Unsupported(f"repeated {tag}")
            seen.add(tag)
        if name == "title":
            _text_construct(child)
            feed["title"] = _Reader.text(child)
        elif name == "id":
            _no_attributes(child, _PLAIN)
            feed["id"] = _relative_uri(_Reader.text(child))
        elif name == "link":
            rel, href, alternate = _link(child)
            feed["links"].append({"rel": rel, "href": href})
            if alternate:
                feed["link"] = href
        elif name in ("author", "contributor"):
            _person(child)
        else:
            _check_harmless(child, _HARMLESS_IN_FEED)
    if "link" not in feed and "id" in feed:
        feed["link"] = feed["id"]
    return feed, entries


class _EntryTexts(NamedTuple):
    """Title, summary (each with its xml:lang), content and author, done by :meth:`fill` only for
    entries the caller still needs (see ``fastparse.complete``)."""

    title: tuple[Any, str | None] | None
    summary: tuple[Any, str | None] | None
    content: Any
    author: str | None

    def fill(self, entry: Fields) -> Fields:
        for name, text in (("title", self.title), ("summary", self.summary)):
            if text is not None:
                entry[name] = _Reader.text(text[0])
                entry[f"{name}_detail"] = {"language": text[1], "base": ""}
        if self.content is not None:
            value = _Reader.text(self.content)
            entry["content"] = [{"value": value}]
            entry.setdefault("summary", value)
        if self.author is not None:
            entry["author"] = self.author
        return entry


def _entry(element: Any, feed_lang: str | None) -> Fields:
    if any(name != _XML_LANG for name in element.attrib):
        raise _Unsupported("attributes on entry")
    lang = _lang(element, feed_lang)
    entry: Fields = {}
    texts: dict[str, Any] = {}
    author: str | None = None
    seen: set[str] = set()
    titled = False  # a non-empty <title> read: feedparser keeps no title nested deeper after it
    for child in element:
        tag = child.tag
        if tag in _ONCE:
            if tag in seen:
                raise _Unsupported(f"repeated {tag}")
            seen.add(tag)
        name = _atom_name(tag)
        if name in ("title", "summary"):
            _text_construct(child)
            texts[name] = (child, _lang(child, lang))
            titled = titled or (name == "title" and bool((child.text or "").strip()))
        elif name == "content":
            _text_construct(child)
            texts["content"] = child
        elif name == "id":
            _no_attributes(child, _PLAIN)
            entry["id"] = _relative_uri(_Reader.text(child))
        elif name == "link":
            _rel, href, alternate = _link(child, titled)
            if alternate:
                entry["link"] = href
        elif name in ("published", "updated"):
            _no_attributes(child, _PLAIN)
            value = _Reader.text(child)
            parsed = _date(value) if value else None
            if value and parsed is None:
                raise _Unsupported(f"date {value!r}")
            entry[name] = value
            entry[f"{name}_parsed"] = parsed
        elif name == "author":
            author = _person(child)
        elif name == "contributor":
            _person(child)
        else:
            _check_harmless(child, _HARMLESS_IN_ENTRY)
    if "link" not in entry and "id" in entry:
        entry["link"] = entry["id"]
    entry["_texts"] = _EntryTexts(texts.get("title"), texts.get("summary"), texts.get("content"), author)
    return entry


def _atom_name(tag: object) -> str | None:
    """The local name of an element in Atom's namespace, ``None`` for any other."""
    return tag[len(_ATOM) :] if isinstance(tag, str) and tag.startswith(_ATOM) else None


def _lang(element: Any, inherited: str | None) -> str | None:
    """feedparser's ``self.lang`` inside ``element``: its xml:lang, else the parent's; ``""`` is none."""
    declared = element.get(_XML_LANG)
    if declared is None:
        return inherited
    return declared.replace("_", "-") or None


def _text_construct(element: Any) -> None:
    """A text or HTML title, summary or content; anything feedparser treats otherwise declines."""
    _no_attributes(element, ("type", _XML_LANG))
    if (element.get("type") or "text").lower() not in _TEXT_TYPES:
        raise _Unsupported(f"type {element.get('type')!r} of {element.tag}")
    if len(element):
        raise _Unsupported(f"markup inside {element.tag}")


def _link(element: Any, titled: bool | None = None) -> tuple[str, str, bool]:
    """``rel``, resolved ``href`` and whether feedparser makes it the link (``_start_link``).
    ``titled``: in an entry, whether a non-empty ``<title>`` came before the link; ``None`` for
    the feed's own links, which hold nothing."""
    if any(name not in _LINK_ATTRIBUTES for name in element.attrib):
        raise _Unsupported("link")
    href = element.get("href")
    if href is None:
        raise _Unsupported("link without href")  # feedparser would read its text instead
    if len(element):
        _link_children(element, titled)
    rel = element.get("rel")
    rel = "alternate" if rel is None else rel.lower()
    kind = element.get("type")
    kind = ("application/atom+xml" if rel == "self" else "text/html") if kind is None else kind
    alternate = rel == "alternate" and StrictFeedParser.map_content_type(kind) in _HTML_TYPES
    return rel, _relative_uri(href), alternate


def _link_children(element: Any, titled: bool | None) -> None:
    """A link's children that leave parse.py's keys as they are (see the module docstring)."""
    if titled is None:
        raise _Unsupported("markup inside the feed's link")
    for child in element:
        if child.tag == _MEDIA_CONTENT:
            for thumbnail in child:
                if thumbnail.tag != _MEDIA_THUMBNAIL:
                    raise _Unsupported(f"{thumbnail.tag} in media:content")
                _thumbnail(thumbnail)
        elif child.tag == _MEDIA_THUMBNAIL:
            _thumbnail(child)
        elif child.tag == _DC_TITLE and titled and not len(child):
            _no_attributes(child, _PLAIN)  # dropped by feedparser: the entry's title came first
        else:
            raise _Unsupported(f"{child.tag} in link")


def _thumbnail(element: Any) -> None:
    """A ``media:thumbnail``: feedparser files its attributes under ``media_thumbnail`` and its
    text as the thumbnail's URL; what it holds must have no handler (an ``<img>`` has none)."""
    for child in element:
        _check_harmless(child, frozenset())


def _person(element: Any) -> str:
    """An author's (or contributor's) string as ``_sync_author_detail`` builds it."""
    _no_attributes(element, _PLAIN)
    if (element.text or "").strip():
        raise _Unsupported("text in person")  # feedparser would mine it for an e-mail address
    parts: dict[str, str] = {}
    for child in element:
        part = _PERSON_PARTS.get(child.tag)
        if part is None or part in parts or len(child) or (child.tail or "").strip():
            raise _Unsupported(f"{child.tag} in person")
        _no_attributes(child, _PLAIN)
        parts[part] = (child.text or "").strip()
    name, email = parts.get("name"), parts.get("email")
    if name and email:
        return f"{name} ({email})"
    return name or email or ""

"""A loopback feed farm: ONE aiohttp.web process serving many feeds, with a configurable mix.

Feeds live at ``/<group>/<i>.xml``. A group has a size, an item count ``n``, a number ``k`` of
new items per hit and a mix of kinds, assigned round-robin by index so every slice of a group
has the same mix:

    304        constant body with an ETag; answers 304 when If-None-Match matches
    unchanged  constant body, no validators: 200 with the same bytes every time
    new        each hit shifts the window by ``k`` items: 200 with ``k`` new items of ``n``
    slow       like ``unchanged`` but answers after ``slow_seconds``
    error      HTTP 500
    real       a real feed of the group's ``real_dir`` (feed ``i`` serves its ``i % n``-th file),
               every item made new on every hit (:func:`renew`): real content, all new

One item in ``match_every`` (default 20) mentions Lavrov and Bayramov discussing the peace
treaty with Armenia, so alerts flow. Item ids are unique per (group, feed, sequence number).

``GET /_stats`` returns hits per group (total, per status, per feed) and how many constant
bodies it holds rendered; with ``?detail=1`` also each ``new`` feed's items offered to the
service (:meth:`Group.offer`). ``POST /_reset`` zeroes the hits. Run ``python benchmarks/farm.py
--config farm.json`` (or ``--feeds N`` for one group named ``poll``); the farm prints
``READY <port>`` once it listens on 127.0.0.1 and has rendered its constant bodies.

One address is one host to a client: it keeps connections per host name. A group with
``hosts: H`` stands for H servers: feed ``i`` is meant to be fetched from ``127.0.0.(1 + i % H)``
(:func:`feed_host`; all of 127.0.0.0/8 is loopback on Linux). The farm listens on 127.0.0.1 …
127.0.0.H of the largest group's H, on one port, and answers every path on every address.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

KINDS = ("304", "unchanged", "new", "slow", "error", "real")
#: The kinds that always serve one body (:func:`constant_body`).
CONSTANT_KINDS = frozenset({"304", "unchanged", "slow"})
MAX_HOSTS = 254  # 127.0.0.1 … 127.0.0.254
#: How the service's requests begin their User-Agent (``Settings.user_agent``): the farm tells
#: the service's polls from the baselines' by it (:meth:`Group.offer`).
SERVICE_AGENT = "feedwatch/"
#: The Content-Type of a farm feed's answer (a parse's item spans record it: feedwatch.splice).
CONTENT_TYPE = "application/rss+xml; charset=utf-8"
MATCH_TITLE = "Lavrov and Bayramov discuss the peace treaty with Armenia: {words}"
MATCH_TEXT = (
    "Russian Foreign Minister Sergey Lavrov and Azerbaijani Foreign Minister Jeyhun Bayramov "
    "discussed the peace treaty with Armenia. {words}"
)
FILLER = [
    ("City council approves new budget for parks ({seq})",
     "The council voted to expand green spaces and repair playgrounds across several districts. "
     "Officials said work would begin in spring and last about eighteen months."),
    ("Central bank keeps interest rate unchanged ({seq})",
     "The regulator cited slowing inflation and stable growth. Analysts expect a cut later in the "
     "year if consumer prices keep easing and the currency remains steady."),
    ("Researchers publish study on coastal erosion ({seq})",
     "A team of geologists measured shoreline retreat over a decade and found the rate doubled in "
     "areas where sand was mined. They recommend stricter permits for extraction."),
    ("Футбольный клуб объявил о новом тренере ({seq})",
     "Клуб подписал контракт на три сезона. Новый тренер пообещал обновить состав и сделать "
     "ставку на молодых игроков из собственной академии."),
]  # fmt: skip


@dataclass
class Group:
    """One family of feeds; see the module docstring for the meaning of each field."""

    name: str
    feeds: int
    mix: dict[str, float]
    items: int = 50
    new_items: int = 2
    match_every: int = 20
    slow_seconds: float = 2.0
    language: str | None = "en"
    hosts: int = 1  # loopback addresses its feeds are spread over (feed_host)
    real_dir: str | None = None  # the ``real`` kind's feed files (*.xml)
    kinds: list[str] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)
    offered: list[int] = field(default_factory=list)  # a new feed's items offered to the service
    last_offered: list[int] = field(default_factory=list)  # the hit that offered the last ones
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.hosts <= MAX_HOSTS:
            raise ValueError(f"group {self.name}: hosts must be 1..{MAX_HOSTS}")
        self.kinds = assign_kinds(self.feeds, self.mix)
        self.clear_hits()
        if "real" in self.kinds and not real_bodies(self.real_dir):
            raise ValueError(f"group {self.name}: the real kind needs *.xml files in {self.real_dir!r}")

    def clear_hits(self) -> None:
        """Zero the hits, their statuses and what they offered the service (a new group, and
        ``POST /_reset``)."""
        self.hits = [0] * self.feeds
        self.offered = [0] * self.feeds
        self.last_offered = [-1] * self.feeds
        self.statuses.clear()

    def offer(self, feed: int, hit: int) -> None:
        """Count the items a ``new`` feed's ``hit`` offers the service that its earlier hits to
        the service did not: hit ``h`` serves the items ``k·h`` … ``k·h + n − 1``, so after a
        hit ``l`` to the service, ``min(n, k·(h − l))`` of them are new to it.

        The service must store exactly the items offered to it, no fewer (lost) and no more
        (stored twice): the scale-out's check (``run.duplicates``). A feed's hits alone do not
        say so: the bare loop hits the poll feeds too, and items served to it alone after the
        service's last poll, or shifted out of the window before its next, never reach the
        service."""
        last = self.last_offered[feed]
        self.offered[feed] += self.items if last < 0 else min(self.items, self.new_items * (hit - last))
        self.last_offered[feed] = hit


def feed_host(index: int, hosts: int) -> str:
    """The loopback address feed ``index`` of a group spread over ``hosts`` is fetched from."""
    return f"127.0.0.{1 + index % hosts}"


def assign_kinds(count: int, mix: dict[str, float]) -> list[str]:
    """Kinds spread evenly (largest remainder per prefix), so any slice keeps the mix."""
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown feed kinds {sorted(unknown)}; known: {KINDS}")
    total = sum(mix.values()) or 1.0
    shares = {k: v / total for k, v in mix.items() if v > 0}
    given: Counter[str] = Counter()
    kinds: list[str] = []
    for i in range(count):
        kind = max(shares, key=lambda k: shares[k] * (i + 1) - given[k])
        given[kind] += 1
        kinds.append(kind)
    return kinds


#: Item ``seq`` was published ``seq`` minutes after this (2026-11-02 09:00 UTC): every item keeps
#: its own date from render to render, as a real feed's items do, and a newer item a later one.
#: Until round 16 every item of a body carried the time it was rendered (one date for all 50,
#: a new one each second): a re-rendered feed changed every item's bytes, and a service that
#: remembers parsed dates met one string per body (docs/performance-history.md, round 16).
EPOCH = 1793610000


@lru_cache(maxsize=1 << 16)
def item_date(seq: int) -> str:
    return formatdate(EPOCH + 60 * seq, usegmt=True)


_VOCABULARY = sorted({w.strip(".,") for _, text in FILLER for w in text.split()})


def _words(key: str, count: int) -> str:
    """Words drawn by ``key``: each matching item is its own story, not a copy of the last one
    (feedwatch.stories merges near-duplicates into one alert)."""
    rng = random.Random(key)
    return " ".join(rng.choice(_VOCABULARY) for _ in range(count))


def render_item(group: Group, feed: int, seq: int, port: int) -> str:
    """About 1 KB, like a real item with an HTML teaser (the shared corpus: 0.5–3.5 KB)."""
    guid = f"{group.name}-{feed}-{seq}"
    link = f"http://127.0.0.1:{port}/news/{guid}"
    if group.match_every and seq % group.match_every == 0:
        title = MATCH_TITLE.format(words=_words(guid + "t", 4))
        teaser = f'<p>{MATCH_TEXT.format(words=_words(guid, 90))}</p><p><a href="{link}">Read more</a></p>'
    else:
        title, text = FILLER[(seq + feed) % len(FILLER)]
        teaser = f'<p>{text}</p><p>{FILLER[seq % len(FILLER)][1]}</p><p><a href="{link}">Read more</a></p>'
    return (
        f"<item><guid isPermaLink='false'>{guid}</guid>"
        f"<title>{escape(title.format(seq=seq))}</title>"
        f"<link>{link}</link><pubDate>{item_date(seq)}</pubDate><author>desk@example.org (News desk)</author>"
        f"<description>{escape(teaser)}</description></item>"
    )


def render_feed(group: Group, feed: int, first_seq: int, port: int) -> bytes:
    """``n`` items, newest first, with sequence numbers ``first_seq + n - 1`` down to ``first_seq``."""
    seqs = range(first_seq + group.items - 1, first_seq - 1, -1)
    items = "".join(render_item(group, feed, s, port) for s in seqs)
    language = f"<language>{group.language}</language>" if group.language else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Farm {group.name} {feed}</title><link>http://127.0.0.1:{port}/</link>"
        f"<description>benchmark feed</description>{language}{items}</channel></rss>"
    ).encode()


@lru_cache(maxsize=4)
def real_bodies(directory: str | None) -> tuple[bytes, ...]:
    """The ``real`` kind's feeds, in name order (none without a directory)."""
    folder = Path(directory) if directory else None
    if folder is None or not folder.is_dir():
        return ()
    return tuple(path.read_bytes() for path in sorted(folder.glob("*.xml")))


# Where a real feed keeps its items' identities: the text of <guid>, <id> and <link> (RSS's
# link, RSS 1.0's too) and the href of Atom's <link> and rdf:about, a CDATA section allowed.
_IDENTITY_TEXT = re.compile(
    rb"(<(?:[\w-]+:)?(?:guid|id|link)\b[^>]*(?<!/)>\s*(?:<!\[CDATA\[)?\s*)([^<\]\s][^<\]]*)"
)
_IDENTITY_ATTRIBUTE = re.compile(rb"(<(?:[\w-]+:)?(?:link|item)\b[^>]*?\b(?:href|rdf:about)=[\"'])([^\"']+)")
_ABSOLUTE = re.compile(rb"^https?://")


def renew(body: bytes, token: str, port: int) -> bytes:
    """``body`` with every item's identity made new for ``token``, nothing else changed: an
    absolute URL becomes one on the farm (``http://127.0.0.1:<port>/<token>/<host>/<path>``, so
    a full-text fetch of the article stays on loopback and finds a 404), any other id gets
    ``<token>-`` in front. The feed's own link and id change too, which costs nothing."""
    mark = token.encode()
    farm = b"http://127.0.0.1:%d/%s/" % (port, mark)

    def new_value(value: bytes) -> bytes:
        if _ABSOLUTE.match(value):
            return farm + value.split(b"://", 1)[1]
        return mark + b"-" + value

    body = _IDENTITY_TEXT.sub(lambda m: m.group(1) + new_value(m.group(2)), body)
    return _IDENTITY_ATTRIBUTE.sub(lambda m: m.group(1) + new_value(m.group(2)), body)


class Farm:
    def __init__(self, groups: list[Group]) -> None:
        self.groups = {g.name: g for g in groups}
        self.port = 0
        self.started = time.time()

    def _constant(self, group: Group, feed: int) -> bytes:
        body = group.bodies.get(feed)
        if body is None:
            body = group.bodies[feed] = constant_body(group, feed, self.port)
        return body

    def render_constant_bodies(self) -> None:
        """Render every feed's constant body now, once the port is known (the items' links
        hold it), before the farm says READY.

        Rendered on first request, a ``304`` feed's body waited for the service's first poll
        without validators (feedstate.UNCONDITIONAL_EVERY), which the bare loop never sends:
        7,000 bodies of ~0.27 ms each, rendered inside the service's capacity windows. In the
        window that held them, ~20 µs of farm CPU a poll that no baseline paid (round 51 in
        docs/performance-history.md). 10,000 feeds take ~2.5 s here, and ~370 MB."""
        for group in self.groups.values():
            for index, kind in enumerate(group.kinds):
                if kind in CONSTANT_KINDS:
                    self._constant(group, index)

    async def feed(self, request: web.Request) -> web.StreamResponse:
        group = self.groups.get(request.match_info["group"])
        try:
            index = int(request.match_info["index"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if group is None or not 0 <= index < group.feeds:
            raise web.HTTPNotFound()
        hit = group.hits[index]
        group.hits[index] = hit + 1
        response = await self._answer(group, index, hit, request)
        group.statuses[response.status] += 1
        return response

    async def _answer(self, group: Group, index: int, hit: int, request: web.Request) -> web.Response:
        kind = group.kinds[index]
        xml = CONTENT_TYPE
        if kind == "error":
            return web.Response(status=500, text="farm error")
        if kind == "slow":
            await asyncio.sleep(group.slow_seconds)
        if kind == "304":
            etag = feed_etag(group, index)
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers={"ETag": etag})
            return web.Response(body=self._constant(group, index), content_type=None,
                                headers={"ETag": etag, "Content-Type": xml})  # fmt: skip
        if kind == "new":
            if request.headers.get("User-Agent", "").startswith(SERVICE_AGENT):
                group.offer(index, hit)
            body = render_feed(group, index, hit * group.new_items, self.port)
            return web.Response(body=body, headers={"Content-Type": xml})
        if kind == "real":
            files = real_bodies(group.real_dir)
            body = renew(files[index % len(files)], f"{group.name}{index}h{hit}", self.port)
            # No charset: the document's own declaration decides, as for a file on a web server.
            return web.Response(body=body, headers={"Content-Type": "application/xml"})
        return web.Response(body=self._constant(group, index), headers={"Content-Type": xml})

    async def stats(self, request: web.Request) -> web.Response:
        detail = request.query.get("detail") == "1"
        out: dict[str, Any] = {"uptime_s": round(time.time() - self.started, 3), "groups": {}}
        for g in self.groups.values():
            entry: dict[str, Any] = {
                "feeds": g.feeds,
                "hits": sum(g.hits),
                "feeds_hit": sum(1 for h in g.hits if h),
                "min_hits": min(g.hits, default=0),
                "statuses": {str(k): v for k, v in g.statuses.items()},
                "kinds": dict(Counter(g.kinds)),
                "bodies": len(g.bodies),  # constant bodies rendered (all of them, from READY on)
            }
            if detail:
                entry["per_feed"] = g.hits
                entry["offered"] = g.offered
            out["groups"][g.name] = entry
        return web.json_response(out)

    async def reset(self, _: web.Request) -> web.Response:
        for g in self.groups.values():
            g.clear_hits()
        return web.json_response({"reset": True})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_reset", self.reset)
        app.router.add_get("/{group}/{index}.xml", self.feed)
        return app


def feed_etag(group: Group, feed: int) -> str:
    """The ETag a ``304`` feed answers with, and answers 304 to (a client sends it back)."""
    return f'"farm-{group.name}-{feed}"'


def raise_mmap_threshold() -> None:
    """Put this process's allocator where a long-running one is, before it serves or fetches.

    asyncio reads a socket into a new 256 KB buffer and shrinks it to what arrived. glibc serves
    that with mmap (+ mremap, munmap: three system calls and a page fault a read) until freeing
    a larger mmapped chunk has raised its threshold, which happens, or not, by the accidents of
    a process's history: a farm measured 15 % of its reads so in one run and 88 % in another,
    and its CPU a request moved with it. A feeds worker has long raised it (its imports, the
    language model); freeing one 1 MB chunk now raises it here for good."""
    chunk = bytes(1 << 20)
    del chunk


def constant_body(group: Group, feed: int, port: int) -> bytes:
    """The bytes a ``304``/``unchanged``/``slow`` feed always serves (for pre-seeding a hash)."""
    return render_feed(group, feed, 0, port)


def groups_from_config(config: dict[str, Any]) -> list[Group]:
    return [Group(name=name, **spec) for name, spec in config["groups"].items()]


async def listen(runner: web.AppRunner, hosts: int, port: int) -> int:
    """Listen on 127.0.0.1 … 127.0.0.``hosts``, one port; with ``port`` 0 a free one, tried
    again if another address has it taken."""
    for _ in range(20):
        chosen = port or free_port()
        try:
            for k in range(hosts):
                await web.TCPSite(runner, feed_host(k, hosts), chosen, backlog=4096).start()
        except OSError:
            if port:
                raise
            for site in list(runner.sites):
                await site.stop()
            continue
        return chosen
    raise OSError(f"no port free on all of 127.0.0.1 … 127.0.0.{hosts}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve(farm: Farm, port: int) -> None:
    runner = web.AppRunner(farm.app(), access_log=None, handle_signals=True)
    await runner.setup()
    farm.port = await listen(runner, max(g.hosts for g in farm.groups.values()), port)
    farm.render_constant_bodies()
    print(f"READY {farm.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def parse_mix(text: str) -> dict[str, float]:
    """``304=0.7,unchanged=0.2,new=0.1`` → a dict."""
    pairs = (part.split("=", 1) for part in text.split(",") if part.strip())
    return {k.strip(): float(v) for k, v in pairs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", help="JSON file: {'groups': {name: {feeds, mix, items, ...}}}")
    parser.add_argument("--feeds", type=int, default=1000, help="size of the single 'poll' group")
    parser.add_argument("--mix", default="304=0.7,unchanged=0.2,new=0.1")
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--new-items", type=int, default=2)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hosts", type=int, default=1, help="loopback addresses the feeds are spread over")
    args = parser.parse_args(argv)
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            groups = groups_from_config(json.load(fh))
    else:
        groups = [
            Group("poll", args.feeds, parse_mix(args.mix), args.items, args.new_items, hosts=args.hosts)
        ]
    raise_mmap_threshold()  # so every run's farm (the floor's and the service's) reads alike
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(Farm(groups), args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()

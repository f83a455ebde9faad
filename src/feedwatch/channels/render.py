"""Alert and digest messages in the formats channels need: text, Markdown, HTML, Slack mrkdwn.

Every piece of feed text is data: it is escaped for the target format here and nowhere else.

* text      control characters dropped; no markup at all; ``<`` before ``! @ #`` gets a
            zero-width space (``<!here>``), because some services pass plain text through
            unescaped (Apprise's Slack workflow mode, the title of most)
* markdown  Markdown punctuation backslash-escaped, ``& < >`` as entities (Markdown passes raw
            HTML through, and Apprise turns Markdown into HTML for e-mail and Telegram)
* html      ``html.escape`` (quotes included); only our own tags appear
* slack     ``& < >`` as entities (so ``<!channel>`` or ``<http://x|y>`` cannot be forged), and
            ``* _ ~ `` ` followed by a zero-width space, so feed text cannot bold or strike
* all       ``@word`` gets a zero-width space after the ``@`` (no mention pings), CR/LF never
            reach a title (e-mail subject), titles are cut at ``TITLE_CHARS``, links are shown
            only when they are http(s)
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from feedwatch.channels.base import AlertPayload, DigestPayload, TopicReason

Format = Literal["text", "markdown", "html", "slack"]
FORMATS: Final = ("text", "markdown", "html", "slack")
TITLE_CHARS: Final = 200
DIGEST_ITEMS: Final = 50  # per message; the rest is counted, not listed
ZWSP: Final = "\u200b"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAKS = re.compile(r"[\r\n\t\u2028\u2029\x85]+")
_MENTION = re.compile(r"@(?=\w)")
_SLACK_TOKEN = re.compile(r"<(?=[!@#])")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")  # > < & become entities
_SLACK_SPECIAL = re.compile(r"([*_~`])")


def one_line(text: str, limit: int = TITLE_CHARS) -> str:
    """``text`` on one line (no CR/LF: it may become an e-mail subject), cut at ``limit``."""
    flat = " ".join(_LINE_BREAKS.sub(" ", _CONTROL.sub("", text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL without spaces or controls, else None."""
    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _esc_text(s: str) -> str:
    return _MENTION.sub("@" + ZWSP, _CONTROL.sub("", s))


def _esc_plain(s: str) -> str:
    return _SLACK_TOKEN.sub("<" + ZWSP, _esc_text(s))


def _esc_markdown(s: str) -> str:
    escaped = _MD_SPECIAL.sub(r"\\\1", _esc_text(s))
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _esc_html(s: str) -> str:
    return html.escape(_esc_text(s), quote=True)


def _esc_slack(s: str) -> str:
    escaped = _esc_text(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SLACK_SPECIAL.sub(r"\1" + ZWSP, escaped)


@dataclass(frozen=True)
class _Markup:
    esc: Callable[[str], str]
    bold: Callable[[str], str]
    link: Callable[[str, str], str]
    quote: Callable[[str], str]
    newline: str


_MARKUP: Final[dict[str, _Markup]] = {
    "text": _Markup(_esc_plain, lambda s: s, lambda t, u: f"{t} <{u}>", lambda s: f"  {s}", "\n"),
    "markdown": _Markup(
        _esc_markdown,
        lambda s: f"**{s}**",
        lambda t, u: f"[{t}]({u.replace('(', '%28').replace(')', '%29')})",
        lambda s: f"> {s}",
        "\n",
    ),
    "html": _Markup(
        _esc_html,
        lambda s: f"<b>{s}</b>",
        lambda t, u: f'<a href="{html.escape(u, quote=True)}">{t}</a>',
        lambda s: f"<blockquote>{s}</blockquote>",
        "<br>\n",
    ),
    "slack": _Markup(
        _esc_slack, lambda s: f"*{s}*", lambda t, u: f"<{_slack_url(u)}|{t}>", lambda s: f"> {s}", "\n"
    ),
}


def _slack_url(url: str) -> str:
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def highlight(reason: TopicReason, fmt: Format) -> str:
    """The snippet escaped for ``fmt`` with each matched term in bold (text: «term»)."""
    m = _MARKUP[fmt]
    mark = (lambda s: f"«{s}»") if fmt == "text" else m.bold
    out: list[str] = []
    pos = 0
    for start, end in sorted(reason.highlights):
        if start < pos or end > len(reason.snippet):
            continue  # overlapping or stale spans: leave the text plain
        out.append(m.esc(reason.snippet[pos:start]))
        out.append(mark(m.esc(reason.snippet[start:end])))
        pos = end
    out.append(m.esc(reason.snippet[pos:]))
    return one_line("".join(out), limit=10_000)


def title(payload: AlertPayload) -> str:
    """The plain one-line title (e-mail subject, notification title); mentions cannot ping."""
    topics = ", ".join(payload.topics)
    return one_line(_esc_plain(f"[{topics}] {payload.title or '(untitled)'}"))


def _headline(payload: AlertPayload, m: _Markup) -> str:
    text = m.esc(one_line(payload.title or "(untitled)"))
    url = safe_url(payload.url)
    return m.bold(m.link(text, url) if url else text)


def alert_body(payload: AlertPayload, fmt: Format) -> str:
    """The whole message for one alert: what, where, when, why, who else reported it."""
    m = _MARKUP[fmt]
    when = (payload.published_at or "unknown time").replace("T", " ")
    meta = " · ".join(m.esc(one_line(x, 120)) for x in (payload.feed, when, payload.language or "") if x)
    lines = [_headline(payload, m), meta, "Topics: " + m.esc(", ".join(payload.topics))]
    if payload.matched_terms:
        lines.append("Matched: " + m.esc(", ".join(payload.matched_terms)))
    for reason in payload.reasons:
        if reason.snippet:
            lines.append(m.quote(highlight(reason, fmt)))
            break  # the strongest topic's snippet is the reason; all terms are listed above
    if payload.also_reported:
        outlets = []
        for copy in payload.also_reported:
            url = safe_url(copy.url)
            name = m.esc(one_line(copy.outlet, 80))
            outlets.append(m.link(name, url) if url else name)
        lines.append("Also reported by: " + ", ".join(outlets))
    lines.append("Key: " + m.esc(payload.idempotency_key))
    return m.newline.join(lines)


def digest_title(digest: DigestPayload) -> str:
    what = "feedwatch digest" if digest.kind == "digest" else "feedwatch: alert burst"
    return one_line(f"{what}: {len(digest.alerts)} alert(s) since {digest.period_start}")


def digest_body(digest: DigestPayload, fmt: Format) -> str:
    """Alerts grouped by topic, one line each; at most ``DIGEST_ITEMS`` listed."""
    m = _MARKUP[fmt]
    lines = [m.bold(m.esc(digest_title(digest)))]
    listed = 0
    for topic, alerts in digest.by_topic().items():
        lines.append("")
        lines.append(m.bold(m.esc(f"{topic} ({len(alerts)})")))
        for alert in alerts:
            if listed >= DIGEST_ITEMS:
                break
            listed += 1
            extra = f" (+{len(alert.also_reported)} outlets)" if alert.also_reported else ""
            lines.append("• " + _headline(alert, m) + " — " + m.esc(one_line(alert.feed, 80) + extra))
    if listed < len(digest.alerts):
        lines.append(m.esc(f"… and {len(digest.alerts) - listed} more"))
    lines.append("Key: " + m.esc(digest.idempotency_key))
    return m.newline.join(lines)

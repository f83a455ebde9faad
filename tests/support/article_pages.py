"""Article pages for the full-text stage: the story wrapped in what news sites wrap it in.

Each page has a navigation bar, a cookie banner, ad slots, a "most read" sidebar, related
links, a comment thread and a footer around the story. The boilerplate is written so that it
*would* match a topic if an extractor kept it (the comments talk about Putin and Aliyev in
Moscow, the sidebar about Karabakh): a clean extraction matches only what the story says.
Used by tests/unit/test_extract.py, tests/integration/test_full_text.py and
benchmarks/extract_bench.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Story:
    key: str
    lang: str
    title: str
    teaser: str  # what the feed carries
    paragraphs: tuple[str, ...]
    author: str = "Staff correspondent"
    date: str = "2025-03-14"
    charset: str = "utf-8"


_NAV = {
    "en": ("Home", "World", "Politics", "Economy", "Sport", "Opinion"),
    "ru": ("Главная", "В мире", "Политика", "Экономика", "Спорт", "Мнения"),
    "az": ("Əsas", "Dünya", "Siyasət", "İqtisadiyyat", "İdman", "Rəy"),
    "hy": ("Գլխավոր", "Աշխարհ", "Քաղաքականություն", "Տնտեսություն", "Սպորտ", "Կարծիք"),
}

# Boilerplate that names the topics: an extractor that keeps it produces false alerts.
_SIDEBAR = (
    "Most read: Karabakh refugees one year on",
    "Putin and Aliyev to meet in Moscow next month, sources say",
    "Opinion: what the Zangezur corridor means for Armenia and Azerbaijan",
)
_COMMENTS = (
    "Putin and Aliyev should sort this out in Moscow, the Kremlin always decides.",
    "Russia and Azerbaijan signed a strategic partnership, everybody knows that.",
    "Another article that says nothing about the Armenia Azerbaijan peace treaty.",
)


def render(story: Story, *, filler_paragraphs: int = 0) -> bytes:
    """The page as served, encoded in the story's charset (declared in a meta tag only)."""
    nav = "".join(f'<li><a href="/{i}">{escape(x)}</a></li>' for i, x in enumerate(_NAV[story.lang]))
    body = "".join(f"<p>{escape(p)}</p>" for p in story.paragraphs)
    filler = "".join(f"<p>{escape(_FILLER[story.lang])} {i}.</p>" for i in range(filler_paragraphs))
    sidebar = "".join(f'<li><a href="/top/{i}">{escape(x)}</a></li>' for i, x in enumerate(_SIDEBAR))
    comments = "".join(
        f'<div class="comment"><span class="user">reader{i}</span><p>{escape(c)}</p></div>'
        for i, c in enumerate(_COMMENTS)
    )
    page = f"""<!DOCTYPE html>
<html lang="{story.lang}"><head><meta charset="{story.charset}">
<title>{escape(story.title)} | The Daily Caucasus</title>
<meta name="author" content="{escape(story.author)}">
<meta property="article:published_time" content="{story.date}T09:30:00+00:00">
<meta property="og:title" content="{escape(story.title)}">
<script>window.dataLayer = window.dataLayer || []; function gtag(){{dataLayer.push(arguments);}}</script>
<style>.ad{{min-height:250px}} nav li{{display:inline}}</style>
</head><body>
<div id="cookie-banner"><p>We use cookies to improve your experience on our website.
By continuing you agree to our cookie policy and the processing of your data.</p><button>OK</button></div>
<header><div class="logo">The Daily Caucasus</div><nav><ul>{nav}</ul></nav></header>
<div class="ad ad-top"><p>Advertisement: cheap flights to Baku, Yerevan and Moscow, book now!</p></div>
<main><article>
<h1>{escape(story.title)}</h1>
<div class="byline">By <span class="author">{escape(story.author)}</span>,
<time datetime="{story.date}">{story.date}</time></div>
<div class="article-body">{body}{filler}</div>
<div class="share-buttons"><a href="#">Share on Facebook</a> <a href="#">Share on X</a></div>
</article>
<section class="related"><h2>Related</h2><ul>{sidebar}</ul></section>
<section id="comments" class="comments"><h2>Comments (3)</h2>{comments}</section>
</main>
<aside class="sidebar"><h3>Most read</h3><ul>{sidebar}</ul>
<div class="ad"><p>Advertisement: the best hotels in Shusha and Stepanakert, book today!</p></div></aside>
<footer><p>© 2025 The Daily Caucasus. All rights reserved. Contact us · Privacy · Terms of use.</p></footer>
</body></html>"""
    return page.encode(story.charset)


_FILLER = {
    "en": "The session continued with reports from regional delegations on water use and irrigation",
    "ru": "Заседание продолжилось докладами региональных делегаций о водопользовании и орошении",
    "az": "İclas regional nümayəndə heyətlərinin su istifadəsi və suvarma barədə məruzələri ilə davam etdi",
    "hy": "Նիստը շարունակվեց տարածաշրջանային պատվիրակությունների զեկույցներով ջրօգտագործման մասին",
}

# The topic is in paragraph three; title and teaser only name one state: a candidate
# (``Rulebook.candidate``: a clause's anchor group occurs) that does not match.
BODY_ONLY_EN = Story(
    key="body-only-en",
    lang="en",
    title="Armenia and Kazakhstan sign transit agreement in Almaty",
    teaser="The ministers discussed transit routes across the Caspian Sea.",
    paragraphs=(
        "The foreign ministers of Armenia and Kazakhstan met in Almaty on Friday to sign an "
        "agreement on cargo transit across the Caspian Sea and the Middle Corridor.",
        "Both sides said container traffic through the port of Aktau had doubled in a year and "
        "agreed to harmonise customs procedures before the summer season.",
        "Ararat Mirzoyan also briefed his counterpart on the peace treaty with Azerbaijan, saying the "
        "text agreed in March was ready for signing and that the border delimitation commissions "
        "of Armenia and Azerbaijan would meet again next month.",
        "The ministers will meet again in Yerevan in the autumn, the ministry said.",
    ),
    author="Aida Karimova",
)

# Cyrillic, windows-1251, charset only in the meta tag; Lavrov and Bayramov in the body.
BODY_ONLY_RU = Story(
    key="body-only-ru",
    lang="ru",
    title="Россия и Казахстан обсудили транзит через Каспий",
    teaser="Стороны договорились упростить таможенные процедуры.",
    paragraphs=(
        "Министры иностранных дел России и Казахстана обсудили в Алма-Ате транзит грузов "
        "через Каспийское море и развитие Среднего коридора.",
        "Стороны договорились упростить таможенные процедуры до начала летнего сезона.",
        "Позднее в тот же день Сергей Лавров и Джейхун Байрамов провели телефонные переговоры, "
        "обсудив двусторонние отношения России и Азербайджана и подготовку визита в Москву.",
        "Следующая встреча министров запланирована на осень.",
    ),
    author="Иван Петров",
    charset="windows-1251",
)

BODY_ONLY_AZ = Story(
    key="body-only-az",
    lang="az",
    title="Ermənistan və Özbəkistan nazirləri Daşkənddə görüşüb",
    teaser="Nazirlər tranzit marşrutlarını müzakirə ediblər.",
    paragraphs=(
        "Ermənistan və Özbəkistanın xarici işlər nazirləri Daşkənddə yük tranzitini və Orta "
        "Dəhlizi müzakirə ediblər.",
        "Tərəflər gömrük prosedurlarının sadələşdirilməsi barədə razılığa gəliblər.",
        "Ararat Mirzoyan həmçinin Azərbaycanla sülh müqaviləsi və sərhədlərin delimitasiyası "
        "üzrə danışıqlar barədə məlumat verib, Azərbaycan və Ermənistan komissiyalarının "
        "növbəti iclasının gələn ay keçiriləcəyini bildirib.",
    ),
)

BODY_ONLY_HY = Story(
    key="body-only-hy",
    lang="hy",
    title="Հայաստանի և Ղազախստանի արտգործնախարարները հանդիպել են Ալմաթիում",
    teaser="Նախարարները քննարկել են Կասպից ծովով տարանցումը։",
    paragraphs=(
        "Հայաստանի և Ղազախստանի արտաքին գործերի նախարարները Ալմաթիում քննարկել են Կասպից "
        "ծովով բեռնափոխադրումները և Միջին միջանցքը։",
        "Կողմերը պայմանավորվել են պարզեցնել մաքսային ընթացակարգերը։",
        "Հայաստանի և Ադրբեջանի միջև խաղաղության պայմանագրի տեքստը համաձայնեցված է, իսկ "
        "սահմանազատման հանձնաժողովները կհանդիպեն հաջորդ ամիս, հայտարարել է Միրզոյանը։",
    ),
)

# A candidate whose full story is about something else: no alert after extraction either.
CANDIDATE_ONLY_EN = Story(
    key="candidate-only-en",
    lang="en",
    title="Armenia wins the European wrestling team title",
    teaser="The team took four gold medals in Bucharest.",
    paragraphs=(
        "Armenia's wrestlers won the European team title in Bucharest on Sunday, taking four "
        "gold medals and two bronze medals over three days of competition.",
        "The head coach said the squad had trained for six months in the mountains near Dilijan "
        "and would now prepare for the world championships in the autumn.",
        "Thousands of fans welcomed the team at the airport on Monday evening.",
    ),
)

# A full_text feed's item with no topic word in title or teaser at all.
PLAIN_TITLE_EN = Story(
    key="plain-title-en",
    lang="en",
    title="Ministers agree on next steps after Geneva round",
    teaser="Negotiators will meet again in May.",
    paragraphs=(
        "Negotiators ended a two-day round in Geneva on Wednesday and agreed to meet again in May.",
        "Foreign ministers Ararat Mirzoyan of Armenia and Jeyhun Bayramov of Azerbaijan said the "
        "peace treaty talks had made progress on the border delimitation and the unblocking of "
        "transport links.",
        "Diplomats said a signing ceremony could take place before the end of the year.",
    ),
)

STORIES = (BODY_ONLY_EN, BODY_ONLY_RU, BODY_ONLY_AZ, BODY_ONLY_HY, CANDIDATE_ONLY_EN, PLAIN_TITLE_EN)

NAV_ONLY_PAGE = (
    b"<!DOCTYPE html><html><head><title>Index</title></head><body><nav><ul><li><a href='/'>Home"
    b"</a></li></ul></nav><footer><p>(c) 2025</p></footer></body></html>"
)

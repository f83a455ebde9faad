"""The compact language model (feedwatch.langmodel) answers exactly what py3langid answers.

The reference is py3langid's own ``LanguageIdentifier`` with ``norm_probs=True``, restricted to the
two-letter labels as ``normalize._identifier`` restricted it before the compact model: same label
and the same confidence, bit for bit, on the labeled corpus, on the repository's article pages and
on generated texts in the languages the feeds carry (and a few they do not), short and long, mixed,
upper-case, with digits, punctuation, emoji and unpaired surrogates; one at a time (the byte loop
below ``_VECTOR_MIN_BYTES``, the vectorized walk above it) and in batches of any size. The two
properties of the automaton the vectorized walk rests on are proved for every state and byte.
"""

from __future__ import annotations

import json
import random
import unicodedata
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.article_pages import STORIES

from feedwatch import langmodel, normalize
from feedwatch.langmodel import LanguageModel

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "labeled-dev.jsonl"

WORDS = {
    "en": "the peace talks between Armenia and Azerbaijan resumed in Washington on Monday after "
    "months of delay while ministers discussed border delimitation and transport links",
    "ru": "переговоры между Арменией и Азербайджаном возобновились в Вашингтоне в понедельник "
    "после нескольких месяцев задержки министры обсудили делимитацию границы",
    "az": "Azərbaycan və Ermənistan arasında sülh danışıqları bazar ertəsi Vaşinqtonda bərpa "
    "olunub nazirlər sərhədin delimitasiyası və nəqliyyat əlaqələrini müzakirə ediblər",
    "az-noschwa": "Azerbaycan ve Ermenistan arasinda sulh danisiqlari bazar ertesi Vasinqtonda "
    "berpa olunub nazirler serhedin delimitasiyasi muzakire edibler",
    "hy": "Հայաստանի և Ադրբեջանի միջև խաղաղության բանակցությունները վերսկսվել են Վաշինգտոնում "
    "երկուշաբթի օրը նախարարները քննարկել են սահմանազատումը",
    "ka": "სომხეთსა და აზერბაიჯანს შორის სამშვიდობო მოლაპარაკებები განახლდა ვაშინგტონში "
    "ორშაბათს მინისტრებმა განიხილეს საზღვრის დელიმიტაცია",
    "tr": "Ermenistan ve Azerbaycan arasındaki barış görüşmeleri pazartesi günü Washington'da "
    "yeniden başladı bakanlar sınır belirleme ve ulaşım bağlantılarını görüştü",
    "uk": "переговори між Вірменією та Азербайджаном відновилися у Вашингтоні в понеділок "
    "міністри обговорили делімітацію кордону",
    "de": "die Friedensgespräche zwischen Armenien und Aserbaidschan wurden am Montag in "
    "Washington wieder aufgenommen",
    "fr": "les pourparlers de paix entre l'Arménie et l'Azerbaïdjan ont repris lundi à Washington",
    "fa": "مذاکرات صلح میان ارمنستان و جمهوری آذربایجان روز دوشنبه در واشنگتن از سر گرفته شد",
    "zh": "亚美尼亚和阿塞拜疆之间的和平谈判周一在华盛顿恢复",
}

FIXED = [
    "",
    " ",
    "a",
    "ə",
    "Ա",
    "ო",
    "2025 — 14:30",
    "!!! ??? ...",
    "Lavrov meets Bayramov",
    "Prezident İlham Əliyev",
    "Փաշինյան",
    "Лавров встретился с Байрамовым",
    "BREAKING NEWS: ARMENIA AND AZERBAIJAN SIGN A PEACE DEAL",
    "ПЕРЕГОВОРЫ ПРОДОЛЖАТСЯ",
    "Sülh danışıqları davam edir 🇦🇿🇦🇲 #peace",
    "Baku, 12 May (Trend): Ilham Aliyev — Владимир Путин — Նիկոլ Փաշինյան",
    "e\u0301te\u0301 cafe\u0301",  # decomposed: NFC changes the bytes
    "half a surrogate \ud800 here",
    "tab\tand\nnew lines\r\n",
    "https://example.com/news/2025/05/12/peace-talks?utm_source=rss",
]


def _reference() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages([code for code in identifier.labels if len(code) == 2])
    return identifier


@pytest.fixture(scope="module")
def models() -> tuple[Any, LanguageModel]:
    return _reference(), normalize._identifier()


def _corpus_texts() -> Iterator[str]:
    if not CORPUS.parent.parent.is_dir():
        pytest.skip(f"{CORPUS.parent.parent} is absent")
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        title, summary = row.get("title") or "", row.get("summary") or ""
        yield title
        yield summary
        yield f"{title}\n{summary}"
        yield f"{title}\n{summary}"[: normalize._DETECT_CHARS].strip()
        yield row.get("note") or ""


def _generated(count: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    vocab = {lang: text.split() for lang, text in WORDS.items()}
    langs = sorted(vocab)
    for _ in range(count):
        if rng.random() < 0.3:  # mixed
            words = [rng.choice(vocab[rng.choice(langs)]) for _ in range(rng.randint(1, 40))]
        else:
            lang = rng.choice(langs)
            words = [rng.choice(vocab[lang]) for _ in range(rng.choice((1, 2, 3, 5, 10, 40, 300)))]
        text = " ".join(words)
        if rng.random() < 0.1:
            text = text.upper()
        if rng.random() < 0.1:
            text = f"{rng.randint(0, 9999)}: {text}, {rng.choice('.!?…—')}"
        yield text


def _random_unicode(count: int, seed: int) -> Iterator[str]:
    """Any code points (the DFA must agree on byte sequences no language uses)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield "".join(chr(rng.randint(1, 0x2FFFF)) for _ in range(rng.randint(1, 30)))


def _assert_same(models: tuple[Any, LanguageModel], texts: Iterator[str]) -> int:
    """Each text alone and all of them in batches of 1 to 60: py3langid's label and confidence."""
    reference, compact = models
    texts_ = list(texts)
    expected = [reference.classify(text) for text in texts_]
    for text, answer in zip(texts_, expected, strict=True):
        assert compact.classify(text) == answer, text
    rng = random.Random(len(texts_))
    start = 0
    while start < len(texts_):
        end = start + rng.randint(1, 60)
        assert compact.classify_many(texts_[start:end]) == expected[start:end], texts_[start:end]
        start = end
    return len(texts_)


def test_labels(models: tuple[Any, LanguageModel]) -> None:
    reference, compact = models
    assert compact.classes == reference.nb_classes
    assert all(len(label) == 2 for label in compact.classes)


def test_every_transition_and_output(models: tuple[Any, LanguageModel]) -> None:
    """The DFA walk is py3langid's for every state and byte, not only for the texts below."""
    reference, compact = models
    blocks = np.frombuffer(compact._blocks, dtype=np.uint32).reshape(-1, 16)
    table = np.frombuffer(compact._table, dtype=np.uint32)
    expanded = table[blocks[:, :, None] + np.arange(16, dtype=np.uint32)].ravel()
    assert np.array_equal(expanded, np.frombuffer(reference.tk_nextmove, dtype=np.uint32))
    rowbase = np.frombuffer(compact._rowbase, dtype=np.uint32).astype(np.int64) * 16
    assert np.array_equal(rowbase, np.asarray(reference._rowbase, dtype=np.int64))
    assert list(compact._output) == list(reference.tk_output)
    assert np.array_equal(compact._ptc, reference.nb_ptc)
    assert np.array_equal(compact._pc, reference.nb_pc)


def test_labeled_corpus(models: tuple[Any, LanguageModel]) -> None:
    assert _assert_same(models, _corpus_texts()) > 300


def test_article_pages_and_fixed_texts(models: tuple[Any, LanguageModel]) -> None:
    stories = ("\n".join(story.paragraphs) for story in STORIES)
    assert _assert_same(models, iter([*FIXED, *WORDS.values(), *stories])) > 30


def test_generated_texts(models: tuple[Any, LanguageModel]) -> None:
    assert _assert_same(models, _generated(1500, seed=6)) == 1500


def test_random_code_points(models: tuple[Any, LanguageModel]) -> None:
    assert _assert_same(models, _random_unicode(300, seed=6)) == 300


def test_detect_language_is_unchanged(models: tuple[Any, LanguageModel]) -> None:
    """normalize.detect_language over the compact model = the same rules over py3langid's."""
    reference, _ = models

    def detect_with_reference(text: str, hint: str | None = None) -> str | None:
        sample = text[: normalize._DETECT_CHARS].strip()
        hinted = normalize._language_code(hint)
        if len(sample) < 3 or not any(c.isalpha() for c in sample):
            return hinted
        lang, confidence = reference.classify(sample)
        if lang == "tr" and "ə" in sample.lower():
            lang = "az"
        if hinted and confidence < 0.5:
            return hinted
        return str(lang) if lang != "und" else hinted

    texts = [*FIXED, *WORDS.values(), *_generated(300, seed=7)]
    for text in texts:
        for hint in (None, "en", "ru", "tr"):
            assert normalize.detect_language(text, hint) == detect_with_reference(text, hint), text


def test_the_state_depends_on_the_last_six_bytes_only(models: tuple[Any, LanguageModel]) -> None:
    """What the vectorized walk rests on: every state is the longest suffix of the input that is
    a state's string (an Aho-Corasick automaton over a prefix-closed set of strings), and no
    state's string is longer than ``_WINDOW`` bytes; so six steps from the start state on the last
    six bytes reach the state the whole walk reaches. Checked for every state and byte:
    ``next(q, b)`` is the child ``str(q) + b`` where that is a state, else ``next(fail(q), b)``
    (``next(start, b)`` is the start state), ``fail(q)`` being the longest proper suffix of
    ``str(q)`` that is a state."""
    _, compact = models
    blocks = np.frombuffer(compact._blocks, dtype=np.uint32).reshape(-1, 16)
    table = np.frombuffer(compact._table, dtype=np.uint32)
    rowbase = np.frombuffer(compact._rowbase, dtype=np.uint32) // 16
    states = len(rowbase)

    def rows(of: np.ndarray) -> np.ndarray:  # next state for each byte, one row per state
        expanded: np.ndarray = table[blocks[rowbase[of]][:, :, None] + np.arange(16, dtype=np.uint32)]
        return expanded.reshape(-1, 256)

    # Each state's string: breadth first from the start state, through its first-found parent.
    strings: dict[int, bytes] = {0: b""}
    frontier = [0]
    while frontier:
        following = []
        for state, row in zip(frontier, rows(np.array(frontier)).tolist(), strict=True):
            for byte, nxt in enumerate(row):
                if nxt not in strings:
                    strings[nxt] = strings[state] + bytes([byte])
                    following.append(nxt)
        frontier = following
    assert len(strings) == states
    assert max(map(len, strings.values())) == langmodel._WINDOW
    of_string = {s: state for state, s in strings.items()}
    assert all(s[:-1] in of_string for s in of_string if s)  # prefix-closed: a trie
    fail = np.zeros(states, dtype=np.int64)
    for state, s in strings.items():
        fail[state] = next((of_string[s[i:]] for i in range(1, len(s)) if s[i:] in of_string), 0)
    child = np.full((states, 256), -1, dtype=np.int64)
    for state, s in strings.items():
        if s:
            child[of_string[s[:-1]], s[-1]] = state
    for lo in range(0, states, 8192):
        chunk = np.arange(lo, min(lo + 8192, states))
        expected = np.where(child[chunk] >= 0, child[chunk], rows(fail[chunk]))
        expected[chunk == 0] = np.maximum(child[0], 0)
        assert np.array_equal(rows(chunk), expected)


def test_the_separator_byte_must_return_to_the_start(models: tuple[Any, LanguageModel]) -> None:
    """Texts of a batch are walked as one buffer, separated by 0xFF (never in UTF-8): the model
    refuses to load unless that byte leads every state to the start state, which emits nothing
    (the installed model loaded, so it has both)."""
    _, compact = models

    def load(table: array[int], output: array[int]) -> LanguageModel:
        return LanguageModel(
            classes=compact.classes,
            ptc=compact._ptc,
            pc=compact._pc,
            table=table,
            blocks=compact._blocks,
            rowbase=compact._rowbase,
            output=output,
        )

    with pytest.raises(ValueError, match="0xFF does not return every state"):
        load(array("I", [1] * len(compact._table)), compact._output)  # every byte to state 1
    emitting = array("i", compact._output)
    emitting[0] = 0
    with pytest.raises(ValueError, match="the start state emits"):
        load(compact._table, emitting)


def test_float16_rows_are_widened_exactly(models: tuple[Any, LanguageModel]) -> None:
    """The bit-level float16 -> float32 widening is in use and equals numpy's cast on every value."""
    _, compact = models
    assert compact._ptc_bits is not None
    every = np.arange(len(compact._ptc))
    widened = compact._float32_rows(every)
    assert np.array_equal(widened.view(np.uint32), compact._ptc.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-1.5, True), (-6e-8, False), (0.0, False), (1.5, False), (-np.inf, False), (np.nan, False)],
)
def test_the_widening_is_used_only_on_negative_normal_values(value: float, expected: bool) -> None:
    """Checked in chunks: one odd value in the last chunk turns the bit widening off."""
    bits = np.full(5000, -2.25, dtype=np.float16)
    bits[-1] = value
    assert langmodel._negative_normal(bits.view(np.uint16), chunk=1024) is expected


def test_batches_mix_empty_short_and_long_texts(models: tuple[Any, LanguageModel]) -> None:
    # "я" * 5000 is 10 KB: more than one walk holds (langmodel._BATCH_BYTES), so it walks alone.
    texts = ["", *FIXED, "", *WORDS.values(), " ", "x" * 5000, "я" * 5000, *_generated(50, seed=9), ""]
    assert _assert_same(models, iter(texts)) == len(texts)
    reference, compact = models
    assert compact.classify_many([]) == []
    assert compact.classify_many(texts * 3) == [reference.classify(t) for t in texts * 3]


def test_nfc_is_applied_before_the_walk(models: tuple[Any, LanguageModel]) -> None:
    _, compact = models
    text = "e\u0301te\u0301 a\u0300 la plage"
    assert compact.classify(text) == compact.classify(unicodedata.normalize("NFC", text))


def test_the_compact_model_is_smaller() -> None:
    model = normalize._identifier()
    # Shared transition blocks, arrays instead of lists: ~30 MB; py3langid's restricted model ~70 MB.
    assert model.nbytes() < 32_000_000

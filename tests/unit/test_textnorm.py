"""textnorm: fold (the stored canonical form) and tokenize (words with original spans)."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feedwatch import textnorm
from feedwatch.textnorm import fold, split_words, tokenize, words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Azerbaijan  AND\tRussia", "azerbaijan and russia"),
        ("Ёлка ЁЖ", "елка еж"),
        ("Мир\u00a0без\u2009Путина", "мир без путина"),
        ("Aze\u00adrbaijan", "azerbaijan"),
        ("Ba\u200bku\ufeff", "baku"),
        ("Moscow\u2014Baku \u2013 talks", "moscow-baku - talks"),
        ("ＡＢＣ", "abc"),
        ("AZƏRBAYCAN", "azərbaycan"),
        ("ԱԴՐԲԵՋԱՆ", "ադրբեջան"),
        ("  padded  ", "padded"),
        ("", ""),
    ],
)
def test_fold(text: str, expected: str) -> None:
    assert fold(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # en: apostrophes and hyphen compounds split; case folded
        ("Azerbaijan's president", ["azerbaijan", "s", "president"]),
        ("Azerbaijani-Armenian border", ["azerbaijani", "armenian", "border"]),
        ("Azerbaijan- Armenia", ["azerbaijan", "armenia"]),
        ("U.S.-brokered deal", ["u", "s", "brokered", "deal"]),
        # ru: hyphen compounds, ё, NBSP, dashes, guillemets
        ("азербайджано-армянской границы", ["азербайджано", "армянской", "границы"]),
        ("Встреча\u00a0Путина — «Алиева»", ["встреча", "путина", "алиева"]),
        ("Её объём", ["ее", "объем"]),
        # az: ə, ı, dotted capital İ (casefold leaves a combining dot, which is dropped)
        ("İlham Əliyev Bakıda", ["ilham", "əliyev", "bakıda"]),
        ("Azərbaycanın Ermənistanla", ["azərbaycanın", "ermənistanla"]),
        # hy: Armenian punctuation (։ ՝ «») separates words; the ligature և folds to եւ
        ("Փաշինյան. աշխատում ենք՝ «խաղաղության»։", ["փաշինյան", "աշխատում", "ենք", "խաղաղության"]),
        ("Ալիևը", ["ալիեւը"]),
        # invisible characters inside a word do not split it
        ("Aze\u00adrbai\u200bjan", ["azerbaijan"]),
        ("Cafe\u0301", ["café"]),
        ("snake_case", ["snake", "case"]),
        ("", []),
        ("— , . !", []),
    ],
)
def test_words(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Putin and Aliyev met in Dushanbe.",
        "«Путин — Ильхам»: встреча в Душанбе",
        "Aze\u00adrbai\u200bjan's İlham",
        "Մոսկվայում սկսվել է Լավրովի և Բայրամովի հանդիպումը",
        "¼ ﬁnal ＡＢＣ",
    ],
)
def test_token_spans_point_into_the_original(text: str) -> None:
    for token in tokenize(text):
        original = text[token.start : token.end]
        assert fold(original).replace("\u0307", "").replace(" ", "") == token.text


def test_compatibility_characters_that_expand_to_spaces_keep_word_count() -> None:
    # NFKC spells U+FDFA (one letter) as four words; word numbering must not shift.
    folded = split_words("\ufdfa Baku").folded.split(" ")
    assert len(folded) == 2
    assert folded[1] == "baku"
    assert [t.text for t in tokenize("\ufdfa Baku")][1] == "baku"


def _fold_by_the_expressions(text: str) -> str:
    """fold's steps as written for every text (the oracle of its ASCII shortcut)."""
    text = textnorm._REMOVE.sub("", unicodedata.normalize("NFKC", text))
    text = re.sub(f"[{textnorm._DASH_CHARS}]", "-", text.casefold().replace("ё", "е"))
    return " ".join(text.split())


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60))
def test_fold_of_ascii_text_is_what_the_expressions_give(text: str) -> None:
    assert fold(text) == _fold_by_the_expressions(text)
    # The words' own shortcut (no in-word marks can occur in ASCII) gives the same words too.
    assert split_words(text).folded == " ".join(
        textnorm.fold_word(w) or textnorm._EMPTY for w in textnorm._WORD_FULL.split(text)[1::2]
    )


@settings(max_examples=3000, deadline=None)
@given(
    st.text(
        alphabet=st.one_of(
            st.characters(codec="utf-8"),
            st.sampled_from([*textnorm._REMOVED, *textnorm._DASH_CHARS, "ё", "Ё", "İ", " ", "\u00a0"]),
        ),
        max_size=60,
    )
)
@example("Moscow\u2014Baku")
@example("Aze\u00adrbaijan Ёж")
@example("Café – talks")
@example("ＡＢＣ")
def test_fold_is_what_the_expressions_give(text: str) -> None:
    """fold's one scan for both sets of marks equals its definition's two substitutions."""
    assert fold(text) == _fold_by_the_expressions(text)


def test_case_folding_neither_makes_nor_changes_a_mark() -> None:
    """What lets fold drop the invisible characters and make the dashes "-" before case folding."""
    marks = set(textnorm._REMOVED + textnorm._DASH_CHARS)
    for code in range(0x110000):
        char = chr(code)
        folded = char.casefold()
        if char in marks:
            assert folded == char
        else:
            assert not marks.intersection(folded), hex(code)


def _screen_fold_oracle(text: str) -> str:
    """``screen_fold`` as defined: the invisible characters dropped, then case folded, ``ё`` as
    ``е``, the dot that ``casefold`` leaves after ``İ`` dropped (every step, on any text)."""
    for invisible in "\u00ad\u200b\u200c\u200d\u2060":
        text = text.replace(invisible, "")
    return text.casefold().replace("ё", "е").replace("\u0307", "")


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet=st.characters(max_codepoint=127), max_size=60),
        st.text(alphabet=st.sampled_from("aZ9 -.'\u00ad\u200bİIıЁёßẞ\u0307Σς"), max_size=30),
        st.text(max_size=30),
    )
)
@example("AZERBAIJAN's Ilham, Aliyev-Pashinyan\t\x00\x7f")
def test_screen_fold_is_its_definition(text: str) -> None:
    """ASCII text takes a shortcut (``lower``); every text folds as the definition says."""
    assert textnorm.screen_fold(text) == _screen_fold_oracle(text)

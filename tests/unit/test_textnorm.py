"""textnorm: fold (the stored canonical form) and tokenize (words with original spans)."""

from __future__ import annotations

import pytest

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

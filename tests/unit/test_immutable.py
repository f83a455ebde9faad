"""``feedwatch.immutable``: slotted at run time, frozen to the type checker, equal and hashed as a
frozen dataclass."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

from feedwatch.fetch.values import FetchRequest, FetchResult
from feedwatch.immutable import immutable
from feedwatch.schedule import NextCheck
from feedwatch.store import PollTarget


@immutable
class Pair:
    a: int
    b: str | None = None


@dataclasses.dataclass(frozen=True)
class FrozenPair:
    a: int
    b: str | None = None


def test_slotted_without_a_dict() -> None:
    pair = Pair(1, "x")
    assert Pair.__slots__ == ("a", "b")
    assert not hasattr(pair, "__dict__")


def test_compares_and_hashes_as_a_frozen_dataclass() -> None:
    assert Pair(1, "x") == Pair(1, "x")
    assert Pair(1, "x") != Pair(1, "y")
    assert hash(Pair(1, "x")) == hash(FrozenPair(1, "x"))
    assert len({Pair(1, "x"), Pair(1, "x"), Pair(2)}) == 2
    assert repr(Pair(1)) == "Pair(a=1, b=None)"


def test_replace_makes_a_changed_copy() -> None:
    pair = Pair(1, "x")
    changed = dataclasses.replace(pair, b="y")
    assert changed == Pair(1, "y")
    assert pair == Pair(1, "x")


@pytest.mark.parametrize("cls", [PollTarget, FetchRequest, FetchResult, NextCheck])
def test_the_poll_values_are_slotted(cls: type) -> None:
    assert "__slots__" in vars(cls)
    assert dataclasses.is_dataclass(cls)


def test_the_type_checker_refuses_an_assignment(tmp_path: Path) -> None:
    """The guard ``frozen=True`` was: mypy reads these classes as frozen."""
    source = tmp_path / "assign.py"
    source.write_text(
        textwrap.dedent(
            """
            from feedwatch.fetch.values import FetchRequest
            from feedwatch.immutable import immutable

            @immutable
            class Pair:
                a: int

            Pair(1).a = 2
            FetchRequest("http://127.0.0.1/").url = "http://127.0.0.1/other"
            """
        )
    )
    out, _, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(source)]
    )
    assert status == 1, out
    assert 'Property "a" defined in "Pair" is read-only' in out
    assert 'Property "url" defined in "FetchRequest" is read-only' in out

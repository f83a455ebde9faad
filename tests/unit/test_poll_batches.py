"""How a tick splits its due feeds into poll messages (``pipeline.split_batches``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from feedwatch.pipeline import split_batches


@given(n=st.integers(0, 1000), most=st.integers(1, 200), least=st.integers(1, 16))
def test_batches_cover_every_id_once_in_order_within_the_limits(n: int, most: int, least: int) -> None:
    ids = list(range(100, 100 + n))
    batches = split_batches(ids, most, least)
    assert [i for b in batches for i in b] == ids
    assert all(0 < len(b) <= most for b in batches)
    # As few batches as the size limit allows, but at least ``least`` when there are that many ids.
    assert len(batches) == max(-(-n // most), min(least, n))
    if batches:
        assert max(map(len, batches)) - min(map(len, batches)) <= 1


def test_few_due_feeds_are_spread_over_the_workers() -> None:
    assert split_batches(list(range(100)), 100, 4) == [
        list(range(0, 25)),
        list(range(25, 50)),
        list(range(50, 75)),
        list(range(75, 100)),
    ]
    assert [len(b) for b in split_batches(list(range(101)), 100, 1)] == [51, 50]
    assert split_batches([7, 8], 100, 4) == [[7], [8]]
    assert split_batches([], 100, 4) == []

"""How a tick splits its due feeds into poll messages by count and by their last bodies' bytes
(``pipeline.split_batches``, ``pipeline.poll_batches``), how a batch is cut by its feeds' body
sizes (``pipeline.cut_by_bytes``: the tick by their last sizes, a worker by what it fetched),
and by how many feeds of one origin its host's pacing lets start in time
(``pipeline.cut_by_origin``, ``pipeline.origin_most``)."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from feedwatch.pipeline import cut_by_bytes, cut_by_origin, origin_most, poll_batches, split_batches
from feedwatch.settings import Settings


@given(n=st.integers(0, 1000), most=st.integers(1, 200), least=st.integers(1, 16))
def test_batches_cover_every_id_once_in_order_within_the_limits(n: int, most: int, least: int) -> None:
    ids = list(range(100, 100 + n))
    batches = split_batches(ids, most, least)
    assert [i for b in batches for i in b] == ids
    assert all(0 < len(b) <= most for b in batches)
    # As few batches as the size limit allows, but at least ``least`` when there are that many
    # ids and the spread leaves each batch a quarter of ``most`` or more.
    floor = max(1, most // 4)
    assert len(batches) == (max(-(-n // most), min(least, max(1, n // floor))) if n else 0)
    if len(batches) > -(-n // most):  # split for the spread: never below the floor
        assert min(map(len, batches)) >= floor
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
    assert split_batches([], 100, 4) == []


def test_a_spread_never_makes_batches_smaller_than_a_quarter_of_the_size() -> None:
    """A busy service with a 0.5 s tick claims a few feeds a tick: they go as one batch."""
    assert split_batches([7, 8], 100, 4) == [[7, 8]]
    assert split_batches(list(range(10)), 100, 4) == [list(range(10))]
    assert [len(b) for b in split_batches(list(range(60)), 100, 4)] == [30, 30]
    assert [len(b) for b in split_batches(list(range(250)), 100, 4)] == [63, 63, 62, 62]
    assert split_batches([7, 8], 4, 4) == [[7], [8]]  # small batches: the floor is one feed


@given(sizes=st.lists(st.integers(0, 5000), max_size=60), most=st.integers(1, 8000))
def test_runs_by_bytes_cover_every_item_once_in_order_and_are_as_long_as_the_budget_allows(
    sizes: list[int], most: int
) -> None:
    items = list(range(len(sizes)))
    runs = cut_by_bytes(items, sizes, most)
    assert [i for run in runs for i in run] == items
    for k, run in enumerate(runs):
        total = sum(sizes[i] for i in run)
        assert run and (total <= most or len(run) == 1)  # over the budget: one item alone
        if k + 1 < len(runs):  # a run ends only where the next item would not fit
            assert total + sizes[runs[k + 1][0]] > most


@given(
    data=st.data(),
    n=st.integers(0, 400),
    most=st.integers(1, 120),
    most_bytes=st.integers(1, 60_000),
    least=st.integers(1, 8),
)
def test_poll_messages_keep_both_bounds_and_are_never_more_than_a_cut_by_count_then_bytes(
    data: st.DataObject, n: int, most: int, most_bytes: int, least: int
) -> None:
    # The length drawn first: lists drawn whole are mostly a few items long, too few for a tick
    # of several batches.
    sizes = data.draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n))
    ids = list(range(1000, 1000 + len(sizes)))
    size_of = dict(zip(ids, sizes, strict=True))
    batches = poll_batches(size_of, most, most_bytes, least)
    assert [f for b in batches for f in b] == ids
    assert all(0 < len(b) <= most for b in batches)
    assert all(len(b) == 1 or sum(size_of[f] for f in b) <= most_bytes for b in batches)
    even = split_batches(ids, most, least)
    before = [part for b in even for part in cut_by_bytes(b, [size_of[f] for f in b], most_bytes)]
    assert len(batches) <= len(before)
    fewest = len(cut_by_bytes(ids, sizes, most_bytes, most_items=most))
    if len(even) <= fewest < len(before):  # as few as both bounds allow: each full but the last
        assert len(batches) == fewest
        for b, after in pairwise(batches):
            assert len(b) == most or sum(size_of[f] for f in b) + size_of[after[0]] > most_bytes
    else:  # nothing to save, or fewer than the spread: the near-equal batches, cut by bytes
        assert batches == before


def test_poll_messages_past_the_byte_bound_go_full_not_a_full_one_and_the_rest() -> None:
    """Eight feeds of 3 bytes, 4 feeds and 10 bytes a message: cut by count, then by bytes, they
    went as 3 + 1 + 3 + 1; now as 3 + 3 + 2. The benchmark's first capacity window, 304 feeds
    not yet sized (64 KiB) among feeds of ~41 KB, went 143 + 57 a batch of 200: 2,000 such feeds
    in 20 messages, now 14."""
    sizes = dict.fromkeys(range(8), 3)
    assert poll_batches(sizes, 4, 10, 1) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    farm = {f: (64 << 10) if f % 10 < 7 else 41_400 for f in range(2000)}
    assert [len(b) for b in poll_batches(farm, 200, 8 << 20, 4)] == [143, 143, 144] * 4 + [143, 137]


def test_poll_messages_are_split_batches_own_where_a_cut_by_both_bounds_saves_none() -> None:
    """Where every near-equal batch fits the byte bound nothing changes: 101 feeds are 51 + 50;
    a few due feeds are spread over the workers, each batch cut by bytes if it must be; and a
    cut by both bounds that makes as many messages keeps the near-equal ones."""
    assert [len(b) for b in poll_batches(dict.fromkeys(range(101), 10), 100, 10_000, 1)] == [51, 50]
    assert poll_batches(dict.fromkeys(range(100), 1), 100, 1000, 4) == split_batches(list(range(100)), 100, 4)
    # Four batches of 25 for the spread; the first holds a feed of 900 bytes and is cut by bytes
    # (the cut by both bounds at once would make two messages, fewer than the spread).
    sizes = dict.fromkeys(range(100), 1) | {3: 900}
    assert [len(b) for b in poll_batches(sizes, 100, 910, 4)] == [11, 14, 25, 25, 25]
    sizes |= {4: 900}
    assert [len(b) for b in poll_batches(sizes, 100, 910, 4)] == [4, 11, 10, 25, 25, 25]
    # 3 + 3 by count, the first cut by bytes into 1 + 2; by both bounds 1 + 4 + 1: as many.
    assert poll_batches(dict(enumerate([6, 5, 1, 1, 1, 1])), 4, 10, 1) == [[0], [1, 2], [3, 4, 5]]
    assert poll_batches({}, 100, 1000, 4) == []


def test_a_feed_larger_than_the_budget_goes_alone() -> None:
    assert cut_by_bytes(["a", "b", "c", "d"], [3, 20, 4, 4], 10) == [["a"], ["b"], ["c", "d"]]
    assert cut_by_bytes([], [], 10) == []


@given(
    origins=st.lists(st.sampled_from(["https://a.example", "https://b.example", "https://c.example", None])),
    most=st.integers(1, 12),
)
def test_runs_by_origin_cover_every_item_once_in_order_and_end_only_at_the_bound(
    origins: list[str | None], most: int
) -> None:
    items = list(range(len(origins)))
    runs = cut_by_origin(items, origins, most)
    assert [i for run in runs for i in run] == items
    for k, run in enumerate(runs):
        counts = Counter(origins[i] for i in run if origins[i] is not None)
        assert run and max(counts.values(), default=0) <= most
        if k + 1 < len(runs):  # a run ends only where the next item's origin is at the bound
            nxt = origins[runs[k + 1][0]]
            assert nxt is not None and counts[nxt] == most


def test_an_origin_s_feeds_past_what_its_pacing_starts_in_time_go_in_the_next_batch() -> None:
    a, b = "https://a.example", "https://b.example"
    assert cut_by_origin(list(range(7)), [a] * 5 + [b] * 2, 2) == [[0, 1], [2, 3], [4, 5, 6]]
    assert cut_by_origin([1, 2, 3], [None, None, None], 1) == [[1, 2, 3]]  # no origin: no bound
    assert cut_by_origin([1, 2, 3], [a, a, a], None) == [[1, 2, 3]]  # no pacing: no bound
    assert cut_by_origin([], [], 3) == [] and cut_by_origin([], [], None) == []


def test_a_batch_takes_an_origin_s_feeds_for_half_the_soft_time_limit_of_pacing(tmp_path: Path) -> None:
    base = {"database_url": f"sqlite:///{tmp_path}/x.db"}
    assert origin_most(Settings(**base)) == 121  # 0.5 s apart, 120 s: 60 s of pacing
    assert origin_most(Settings(**base, per_host_min_gap_seconds=2, task_soft_time_limit=120)) == 31
    assert origin_most(Settings(**base, per_host_min_gap_seconds=0)) is None

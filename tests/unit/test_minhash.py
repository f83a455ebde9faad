"""feedwatch.minhash gives datasketch's values (stored story signatures keep matching)."""

from __future__ import annotations

import random

import pytest

from feedwatch import minhash as module
from feedwatch.minhash import minhash_many


@pytest.mark.parametrize("count", [0, 1, 7, 400])
def test_same_values_as_datasketch(count: int) -> None:
    datasketch = pytest.importorskip("datasketch")
    rng = random.Random(count)
    items = [rng.randbytes(rng.randint(1, 40)) for _ in range(count)]
    reference = datasketch.MinHash(num_perm=60, seed=20240501)
    reference.update_batch(items)
    assert minhash_many([items], 60, 20240501) == [[int(v) for v in reference.hashvalues]]


def test_order_and_duplicates_do_not_matter() -> None:
    items = [b"a b c", b"b c d", b"c d e"]
    assert minhash_many([items], 16, 1) == minhash_many([[*reversed(items), items[0]]], 16, 1)


def test_many_sets_together_give_each_sets_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty sets between others, and sets split across chunks, keep their own values."""
    rng = random.Random(7)
    sizes = [rng.choice([0, 0, 1, 2, 9, 60]) for _ in range(80)]
    sets = [[rng.randbytes(rng.randint(1, 30)) for _ in range(size)] for size in sizes]
    alone = [minhash_many([items], 60, 20240501)[0] for items in sets]
    assert minhash_many(sets, 60, 20240501) == alone
    monkeypatch.setattr(module, "_CHUNK_ROWS", 7)  # most chunks close after one or two sets
    assert minhash_many(sets, 60, 20240501) == alone
    assert minhash_many([], 60, 20240501) == []
    assert minhash_many([[], []], 4, 1) == [[(1 << 32) - 1] * 4] * 2

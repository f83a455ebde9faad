"""feedwatch.minhash gives datasketch's values (stored story signatures keep matching)."""

from __future__ import annotations

import random

import pytest

from feedwatch.minhash import minhash


@pytest.mark.parametrize("count", [0, 1, 7, 400])
def test_same_values_as_datasketch(count: int) -> None:
    datasketch = pytest.importorskip("datasketch")
    rng = random.Random(count)
    items = [rng.randbytes(rng.randint(1, 40)) for _ in range(count)]
    reference = datasketch.MinHash(num_perm=60, seed=20240501)
    reference.update_batch(items)
    assert minhash(items, 60, 20240501) == [int(v) for v in reference.hashvalues]


def test_order_and_duplicates_do_not_matter() -> None:
    items = [b"a b c", b"b c d", b"c d e"]
    assert minhash(items, 16, 1) == minhash([*reversed(items), items[0]], 16, 1)

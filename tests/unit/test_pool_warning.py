"""``status.pool_warning``: the article identity index against PostgreSQL's buffer pool."""

from __future__ import annotations

import pytest

from feedwatch.status import IDENTITY_INDEX_POOL_SHARE, pool_warning

MB = 2**20


@pytest.mark.parametrize(
    ("index_mb", "pool_mb", "warns"),
    [
        (1, 128, False),  # a new deployment
        (96, 128, False),  # three quarters of the pool: a quarter left for the tables' other hot pages
        (97, 128, True),
        (1191, 128, True),  # 10 million articles at the server's default pool (rounds 66, 67)
        (1191, 2048, False),  # the pool that held them (round 67)
        (1191, 1536, True),
    ],
)
def test_warns_past_three_quarters_of_the_pool(index_mb: int, pool_mb: int, warns: bool) -> None:
    assert IDENTITY_INDEX_POOL_SHARE == 0.75
    assert (pool_warning(index_mb * MB, pool_mb * MB) is not None) is warns


def test_the_warning_gives_the_sizes_and_what_to_do() -> None:
    assert pool_warning(1191 * MB, 128 * MB) == (
        "the article identity index is 1,191 MB and PostgreSQL's shared_buffers 128 MB: each new"
        " article reads a page of the index from outside the buffer pool, and storing articles costs"
        " the server more as the table grows (set shared_buffers to about twice the index;"
        ' docs/operations.md, "A growing article table")'
    )

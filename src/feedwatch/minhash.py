"""MinHash with numpy alone: the values of ``datasketch.MinHash`` (2.x, default ``affine32`` scheme).

datasketch imports scipy, which costs every worker process ~60 MB of RSS for the 30 lines used
here. This module reproduces its default scheme bit for bit — SHA-1 truncated to 32 bits, the
MurmurHash3 finalizer, then ``a * h + b mod 2**32`` per permutation with ``a`` odd, drawn from
``numpy.random.RandomState(seed)`` — so signatures stored by earlier versions keep matching.
``tests/unit/test_minhash.py`` checks the equality against datasketch (a dev dependency).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

_U32 = np.uint32
_FMIX32 = (_U32(16), _U32(0x85EBCA6B), _U32(13), _U32(0xC2B2AE35), _U32(16))


@lru_cache(maxsize=4)
def _permutations(num_perm: int, seed: int) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    # Drawn in datasketch's order (all a's, then all b's) from the same generator.
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=_U32) * _U32(2) + _U32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=_U32)
    return a, b


def _fmix32(hv: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    s1, m1, s2, m2, s3 = _FMIX32
    hv = hv ^ (hv >> s1)
    hv = hv * m1
    hv = hv ^ (hv >> s2)
    hv = hv * m2
    return hv ^ (hv >> s3)


#: Shingle hashes permuted together at most (a ``(rows, num_perm)`` uint32 array: ~1 MB at 60).
_CHUNK_ROWS = 4_096


def minhash_many(sets: Sequence[Collection[bytes]], num_perm: int, seed: int) -> list[list[int]]:
    """The ``num_perm`` MinHash values of each set of byte strings (2**32 - 1 each for an empty
    set), the sets' hashes permuted together.

    An ingest batch of the benchmark (100 feeds of 50 new items, one in 20 flagged) signs ~250
    articles of ~80 shingles each; one article at a time, the fixed cost of a dozen numpy calls
    and of converting each hash (``int.from_bytes``, then a list into an array) was most of a
    signature. Here the digests' first four bytes are joined and read as little-endian uint32
    in one call, and each chunk of sets is permuted at once and cut into its sets' minima by
    ``np.minimum.reduceat`` (round 21 in docs/performance-history.md). The values are those
    of one set at a time (tests/unit/test_minhash.py)."""
    out = [[(1 << 32) - 1] * num_perm for _ in sets]
    a, b = _permutations(num_perm, seed)
    sha1 = hashlib.sha1
    for chunk in _chunks(sets):
        digests = b"".join(sha1(item, usedforsecurity=False).digest()[:4] for j in chunk for item in sets[j])
        hv = _fmix32(np.frombuffer(digests, dtype="<u4").astype(_U32, copy=False).reshape(-1, 1))
        with np.errstate(over="ignore"):  # wrap-around is the modulo 2**32 of the scheme
            permuted = hv * a + b
        starts = np.cumsum([0] + [len(sets[j]) for j in chunk[:-1]])
        for j, values in zip(chunk, np.minimum.reduceat(permuted, starts, axis=0).tolist(), strict=True):
            out[j] = values
    return out


def _chunks(sets: Sequence[Collection[bytes]]) -> Iterator[list[int]]:
    """The indices of the non-empty sets, in runs of at least ``_CHUNK_ROWS`` items (the last
    run: what is left); a set is never split."""
    chunk: list[int] = []
    rows = 0
    for k, items in enumerate(sets):
        if items:
            chunk.append(k)
            rows += len(items)
            if rows >= _CHUNK_ROWS:
                yield chunk
                chunk, rows = [], 0
    if chunk:
        yield chunk

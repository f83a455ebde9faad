"""py3langid's language model in a compact form: the same answers in ~30 MB instead of ~70 MB.

py3langid (0.4) holds, per process: the DFA's transition table as ``uint32`` (38,346 distinct
rows of 256 next states: 39 MB, because the automaton has ~104,600 states, more than ``uint16``
holds), two Python lists of ~104,600 ints (each state's pre-shifted row offset and the feature it
emits: ~8 MB with their int objects, whose reference counts also copy shared pages into every
forked child that reads them) and the naive-Bayes matrix restricted to the chosen languages
(float16, 23 MB).

Here each row is cut into 16 blocks of 16 transitions and equal blocks are stored once: 613,536
blocks are 55,779 distinct ones (3.6 MB), and a row becomes 16 block offsets (2.5 MB). One step
of the walk reads ``table[blocks[row * 16 + (byte >> 4)] + (byte & 15)]`` instead of
``nextmove[row * 256 + byte]``. The per-state lists are ``array`` objects. The matrix, the feature
order and every numpy operation of :meth:`LanguageModel.classify` are py3langid's
(``LanguageIdentifier.classify`` with ``norm_probs=True``), so labels and confidences are the same
bits: ``tests/unit/test_language_model.py`` compares both on the labeled corpus and generated
texts.

The model is read straight from py3langid's ``model.npz.xz`` a chunk at a time, so loading peaks
a few MB above the final size (``LanguageIdentifier.from_model_file`` holds the unrestricted
matrix and the expanded transition table at once: ~35 MB above its final size).

Speed (the feeds worker detects the language of every new article): py3langid walks the DFA in
a Python loop, one byte at a time (~0.25 µs a byte), and converts the gathered float16 rows of
the matrix with numpy's float16 cast (~1.4 ns a value). Here, for texts of
``_VECTOR_MIN_BYTES`` and more and for :meth:`LanguageModel.classify_many`'s batches:

* The walk is vectorized. The automaton is an Aho-Corasick automaton over byte strings of at most
  ``_WINDOW`` (6) bytes, so the state after any byte is the state reached from the start state by
  the last six bytes alone: every position's state is six table steps from the start, all
  positions at once (the first two steps in one 65,536-entry table). A byte that sends every
  state back to the start (``_RESET``, 0xFF: never in UTF-8) separates the texts of a batch, so
  one walk serves them all. ``tests/unit/test_language_model.py`` proves both properties for
  every state and byte of the installed model.
* Features are counted in first-seen order by one sort of (text, feature, position) keys: the
  order of py3langid's ``Counter``, which fixes the order, hence the bits, of the BLAS sum.
* float16 → float32 is done on the bits (every value of the matrix is a negative normal number,
  checked on load; otherwise numpy's cast is used), then the same ``float32 @ float32`` BLAS call
  numpy makes for py3langid's mixed-type product, and the same softmax, row by row.

Less than ``_VECTOR_MIN_BYTES`` in all keeps the byte loop (numpy's per-call costs dominate there).
"""

from __future__ import annotations

import contextlib
import lzma
import math
import shutil
import tempfile
import unicodedata
import zipfile
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np
import numpy.typing as npt

_ROW = 256  # transitions per DFA row: one per byte value
_BLOCK = 16  # transitions per shared block; a row is _ROW // _BLOCK blocks
_CHUNK_BYTES = 256 << 10
_WINDOW = 6  # the longest string a DFA state stands for: a state depends on the last 6 bytes only
_RESET = 0xFF  # not in UTF-8; sends every state to the start state, which emits nothing
_VECTOR_MIN_BYTES = 160  # less than this in all: a byte loop per text (numpy's per-call cost)
# Bytes of text walked together at most. Each walk's temporaries are a few times its bytes in
# 8-byte integers (and 464 bytes per distinct feature for the matrix rows); past ~16 KB of text
# they leave the CPU's cache: a feed's 50 texts walked as one cost 13-20 % more than in 8 KB
# walks (the shared corpus's 1,413 entries 37.7 -> 32.8 µs a text; 1.7 KB texts 168 -> 135 µs).
# Answers do not depend on it: every text of a walk is counted and scored on its own.
_BATCH_BYTES = 1 << 13


class LanguageModel:
    """Naive-Bayes language identifier over byte n-grams found by a DFA walk (py3langid's)."""

    __slots__ = (
        "_alias_pairs",
        "_blocks",
        "_feature_bits",
        "_np_blocks",
        "_np_output",
        "_np_rowbase",
        "_np_table",
        "_output",
        "_pair_state",
        "_pc",
        "_ptc",
        "_ptc_bits",
        "_rowbase",
        "_table",
        "classes",
    )

    def __init__(
        self,
        *,
        classes: list[str],
        ptc: npt.NDArray[Any],
        pc: npt.NDArray[Any],
        table: array[int],
        blocks: array[int],
        rowbase: array[int],
        output: array[int],
    ) -> None:
        self.classes = classes
        self._ptc = ptc  # feature x class log-probabilities
        self._pc = pc  # class log-priors
        self._table = table  # distinct blocks of next states, _BLOCK entries each
        self._blocks = blocks  # row * (_ROW // _BLOCK) + byte // _BLOCK -> offset in _table
        self._rowbase = rowbase  # state -> row * (_ROW // _BLOCK)
        self._output = output  # state -> feature counted on entering it, or -1
        # Labels that occur twice (one language in two scripts): py3langid folds the second
        # column's probability into the first and zeroes the second.
        first: dict[str, int] = {}
        self._alias_pairs: list[tuple[int, int]] = []
        for i, label in enumerate(classes):
            if label in first:
                self._alias_pairs.append((first[label], i))
            else:
                first[label] = i
        # numpy views of the same tables (no copies) for the vectorized walk.
        self._np_table = np.frombuffer(table, dtype=np.uint32)
        self._np_blocks = np.frombuffer(blocks, dtype=np.uint32)
        self._np_rowbase = np.frombuffer(rowbase, dtype=np.uint32)
        self._np_output = np.frombuffer(output, dtype=np.int32)
        if self._step(np.arange(len(output), dtype=np.intp), _RESET >> 4, _RESET & 15).any():
            raise ValueError("py3langid model: byte 0xFF does not return every state to the start")
        if self._np_output[0] >= 0:
            raise ValueError("py3langid model: the start state emits a feature")
        # The state after two bytes (b0, b1) from the start, at index b0 | b1 << 8 (256 KB).
        pairs = np.arange(1 << 16, dtype=np.intp)
        first_step = self._step(np.zeros(len(pairs), dtype=np.intp), (pairs >> 4) & 15, pairs & 15)
        self._pair_state = self._step(first_step, pairs >> 12, (pairs >> 8) & 15)
        self._feature_bits = max(1, (len(ptc) - 1).bit_length())  # (text, feature) keys: 32 bits
        # Every value a negative normal float16: its float32 bits are (bits << 13) + 0xA8000000
        # (sign kept, exponent rebased from 15 to 127, mantissa widened), exactly numpy's cast.
        bits = ptc.view(np.uint16) if ptc.dtype == np.float16 else None
        self._ptc_bits = bits if bits is not None and _negative_normal(bits.reshape(-1)) else None

    @classmethod
    def from_py3langid(cls, keep: Callable[[str], bool]) -> LanguageModel:
        """py3langid's bundled model, restricted to the labels ``keep`` accepts (in model order,
        as ``LanguageIdentifier.set_languages`` restricts it)."""
        from py3langid.langid import MODEL_DIR, MODEL_FILE

        # py3langid's own loader streams the xz file to a temporary file too: the npz inside is
        # stored uncompressed, so each array can then be read in chunks.
        with tempfile.TemporaryFile(suffix=".npz") as tmp:
            with lzma.open(MODEL_DIR / MODEL_FILE) as src:
                shutil.copyfileobj(src, tmp, length=1 << 20)
            tmp.seek(0)
            with zipfile.ZipFile(tmp) as npz:
                model = cls._from_npz(npz, keep)
        _release_free_heap()
        return model

    @classmethod
    def _from_npz(cls, npz: zipfile.ZipFile, keep: Callable[[str], bool]) -> LanguageModel:
        all_classes = [str(c) for c in _read_whole(npz, "classes").tolist()]
        columns = [i for i, label in enumerate(all_classes) if keep(label)]
        pc = _read_whole(npz, "pc")[columns]
        row = _read_whole(npz, "nextmove_row").astype(np.int64)  # DFA state -> row of nextmove
        out = _read_whole(npz, "out_feat")  # DFA state -> feature or -1
        if len(out) != len(row):
            raise ValueError("py3langid model: one output per DFA state expected")
        per_row = _ROW // _BLOCK

        # The rows of "nextmove" (next state per byte), cut into blocks; equal blocks kept once.
        table = array("I")
        blocks = array("I")
        offsets: dict[bytes, int] = {}
        for chunk in _chunks(npz, "nextmove", multiple_of=_ROW):
            cut = np.ascontiguousarray(chunk, dtype=np.uint32).reshape(-1, _BLOCK)
            distinct, inverse = np.unique(cut.view(f"V{_BLOCK * 4}").ravel(), return_inverse=True)
            found = np.empty(len(distinct), dtype=np.uint32)
            for i, block in enumerate(distinct.tolist()):
                offset = offsets.get(block)
                if offset is None:
                    offset = offsets[block] = len(table)
                    table.frombytes(block)
                found[i] = offset
            blocks.frombytes(found[inverse.ravel()].tobytes())
        del offsets
        if int(row.max()) * per_row >= len(blocks):
            raise ValueError("py3langid model: a DFA state names a row that does not exist")

        rowbase = array("I", (row * per_row).astype(np.uint32).tobytes())
        output = array("i", out.astype(np.int32).tobytes())

        ptc_shape, ptc_dtype, ptc_chunks = _row_chunks(npz, "ptc")
        if ptc_shape[1] != len(all_classes):
            raise ValueError("py3langid model: one matrix column per class expected")
        ptc = np.empty((ptc_shape[0], len(columns)), dtype=ptc_dtype)
        start = 0
        for rows in ptc_chunks:
            ptc[start : start + len(rows)] = rows[:, columns]
            start += len(rows)
        return cls(
            classes=[all_classes[i] for i in columns],
            ptc=ptc,
            pc=pc,
            table=table,
            blocks=blocks,
            rowbase=rowbase,
            output=output,
        )

    def nbytes(self) -> int:
        """Bytes held by the model's tables (not counting small Python objects)."""
        arrays = (self._table, self._blocks, self._rowbase, self._output)
        return int(self._ptc.nbytes + self._pc.nbytes) + sum(a.itemsize * len(a) for a in arrays)

    def classify(self, text: str) -> tuple[str, float]:
        """``(label, confidence)``: what py3langid's ``classify`` answers (``norm_probs=True``)."""
        return self.classify_many([text])[0]

    def classify_many(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """``[classify(text) for text in texts]``, the same answers, with one walk per
        ``_BATCH_BYTES`` of text."""
        datas = [_encode(text) for text in texts]
        if sum(map(len, datas)) < _VECTOR_MIN_BYTES:
            return [self._classify_short(data) for data in datas]
        results: list[tuple[str, float]] = []
        start = 0
        while start < len(datas):
            end, size = start + 1, len(datas[start])
            most = start + (1 << (32 - self._feature_bits)) - 1  # texts a (text, feature) key holds
            while end < min(len(datas), most) and size + len(datas[end]) < _BATCH_BYTES:
                size += len(datas[end]) + 1
                end += 1
            results += self._classify_encoded(datas[start:end])
            start = end
        return results

    def _classify_short(self, data: bytes) -> tuple[str, float]:
        """One short text: the byte loop costs less than the vectorized walk's numpy calls."""
        visits = self._visits(data)
        if visits:
            idx = np.fromiter(visits.keys(), dtype=np.intp, count=len(visits))
            counts = np.fromiter(visits.values(), dtype=np.float32, count=len(visits))
            scores = (np.log1p(counts) @ self._float32_rows(idx) + self._pc)[None, :]
        else:
            scores = np.zeros((1, len(self.classes)), dtype=np.float32)
        return self._decide(scores, [len(data)])[0]

    def _classify_encoded(self, datas: list[bytes]) -> list[tuple[str, float]]:
        text_of_group, features, counts = self._first_seen_counts(datas)
        # The groups of text t are groups[bounds[t]:bounds[t + 1]], in first-seen order.
        bounds = np.searchsorted(text_of_group, np.arange(len(datas) + 1)).tolist()
        rows = self._float32_rows(features)
        weights = np.log1p(counts.astype(np.float32))
        scores = np.zeros((len(datas), len(self.classes)), dtype=np.float32)
        for t in range(len(datas)):
            a, b = bounds[t], bounds[t + 1]
            if a < b:  # py3langid: sparse counts @ matrix rows, in first-seen order, + priors
                np.add(weights[a:b] @ rows[a:b], self._pc, out=scores[t])
        return self._decide(scores, [len(data) for data in datas])

    def _decide(self, scores: npt.NDArray[np.float32], sizes: list[int]) -> list[tuple[str, float]]:
        """py3langid's ``_decide`` (norm_probs=True) on each row, in place: the same operations
        in the same order, for the same float32 bits."""
        scale = np.array([1.0 / math.sqrt(size or 1) for size in sizes], dtype=np.float32)
        scores *= scale[:, None]
        np.exp(scores - scores.max(axis=1, keepdims=True), out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        for i, j in self._alias_pairs:
            scores[:, i] += scores[:, j]
            scores[:, j] = 0.0
        best = scores.argmax(axis=1).tolist()
        confidence = scores[np.arange(len(best)), best].tolist()
        return [(self.classes[b], c) for b, c in zip(best, confidence, strict=True)]

    def _float32_rows(self, features: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """The matrix rows of ``features`` as float32 (the cast numpy makes for py3langid)."""
        if self._ptc_bits is None:
            return np.asarray(self._ptc[features], dtype=np.float32)
        wide = self._ptc_bits.take(features, axis=0).astype(np.uint32)
        wide <<= 13
        wide += 0xA8000000
        return wide.view(np.float32)

    def _step(self, states: npt.NDArray[Any], high: Any, low: Any) -> npt.NDArray[np.uint32]:
        """One DFA step from each state on the byte with these high and low nibbles (``np.take``
        with intp indices: numpy's fancy indexing converts uint32 indices first, ~1.7x slower)."""
        at = self._np_rowbase.take(states, mode="clip").astype(np.intp)
        at += high
        at = self._np_blocks.take(at, mode="clip").astype(np.intp)
        at += low
        return self._np_table.take(at, mode="clip")

    def _first_seen_counts(
        self, datas: list[bytes]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint32], npt.NDArray[np.intp]]:
        """Per text, the features the walk emits and their counts in first-seen order (the order
        of py3langid's ``Counter``): the text of each (text, feature) group, its feature, its count."""
        sep = bytes([_RESET])
        buf = sep * (_WINDOW - 1) + sep.join(datas)
        data = np.frombuffer(buf, dtype=np.uint8)
        high, low = (data >> 4).astype(np.intp), (data & 15).astype(np.intp)
        windows = len(buf) - _WINDOW + 1  # window j: buf[j : j + _WINDOW], the state at j + 5
        pairs = np.empty(windows, dtype=np.uint16)
        pairs[0::2] = np.frombuffer(buf, dtype="<u2", count=(windows + 1) // 2)
        pairs[1::2] = np.frombuffer(buf, dtype="<u2", offset=1, count=windows // 2)
        states = self._pair_state.take(pairs.astype(np.intp), mode="clip")
        for k in range(2, _WINDOW):
            states = self._step(states, high[k : k + windows], low[k : k + windows])
        emitted = self._np_output.take(states.astype(np.intp), mode="clip")
        positions = (emitted >= 0).nonzero()[0]
        features = emitted[positions].astype(np.uint32)
        # Text t's bytes end at window ends[t] - 2; window ends[t] - 1 is the separator after it.
        ends = np.cumsum([len(d) + 1 for d in datas])
        text = np.searchsorted(ends, positions, side="right")
        key = text.astype(np.uint32) << self._feature_bits
        key |= features
        # Sorted by (text, feature) stably: a group's first member is its first occurrence.
        order = _stable_argsort(key)
        ranked = key[order]
        edge = np.ones(len(ranked) + 1, dtype=bool)  # where a group starts, and the end
        np.not_equal(ranked[1:], ranked[:-1], out=edge[1:-1])
        edges = edge.nonzero()[0]
        count_at = np.zeros(len(key), dtype=np.intp)
        count_at[order[edges[:-1]]] = edges[1:] - edges[:-1]
        # A group's count sits at its first occurrence and every count is at least 1, so the
        # nonzero positions are the groups in first-seen order: one pass, where sorting the
        # first occurrences cost ~6 µs of a 470-byte text's ~40.
        first = count_at.nonzero()[0]
        return text[first], features[first], count_at[first]

    def _visits(self, data: bytes) -> Counter[int] | None:
        """Feature counts in first-seen order (py3langid's visit_counts: the order fixes the sum's)."""
        table, blocks, rowbase, output = self._table, self._blocks, self._rowbase, self._output
        state = 0
        features: list[int] = []
        append = features.append
        for byte in data:
            state = table[blocks[rowbase[state] + (byte >> 4)] + (byte & 15)]
            feature = output[state]
            if feature >= 0:
                append(feature)
        return Counter(features) if features else None


def _negative_normal(bits: npt.NDArray[np.uint16], chunk: int = 1 << 20) -> bool:
    """Whether every float16 (as its bits) is negative and normal: sign set, exponent neither 0
    nor all ones. In chunks: over the whole matrix at once the temporaries were +33 MB of peak
    RSS in every worker process that loads the model."""
    for start in range(0, len(bits), chunk):
        part = bits[start : start + chunk]
        exponent = part & 0x7C00
        if not ((part >> 15) == 1).all() or not (exponent != 0).all() or not (exponent != 0x7C00).all():
            return False
    return True


def _stable_argsort(key: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """``np.argsort(key, kind="stable")`` in two 16-bit radix passes (numpy radix-sorts 16-bit
    keys only; for 32 bits it falls back to timsort, ~3x slower here)."""
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((key[order] >> 16).astype(np.uint16), kind="stable")]


def _encode(text: str) -> bytes:
    """py3langid's ``_encode`` of a str."""
    if text.isupper():
        text = text.lower()
    return unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")


def _release_free_heap() -> None:
    """Give the loader's freed temporaries back to the OS (glibc keeps ~20 MB of them as RSS)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
        ctypes.CDLL(None).malloc_trim(0)


def _open_npy(npz: zipfile.ZipFile, name: str) -> tuple[IO[bytes], tuple[int, ...], np.dtype[Any]]:
    member = npz.open(f"{name}.npy")
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    if fortran or dtype.hasobject:
        member.close()
        raise ValueError(f"py3langid model: {name} is not a C-order numeric array")
    return member, shape, dtype


def _read_whole(npz: zipfile.ZipFile, name: str) -> npt.NDArray[Any]:
    with npz.open(f"{name}.npy") as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _chunks(npz: zipfile.ZipFile, name: str, multiple_of: int) -> Any:
    """A 1-d array's values, a few hundred KB (a multiple of ``multiple_of`` values) at a time."""
    member, shape, dtype = _open_npy(npz, name)
    with member:
        left = math.prod(shape)
        if left % multiple_of:
            raise ValueError(f"py3langid model: {name} is not made of {multiple_of}-value rows")
        step = max(1, _CHUNK_BYTES // (dtype.itemsize * multiple_of)) * multiple_of
        while left:
            n = min(step, left)
            yield np.frombuffer(_read_exactly(member, n * dtype.itemsize), dtype=dtype)
            left -= n


def _row_chunks(npz: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype[Any], Any]:
    """A 2-d array's shape, type and rows, a few MB at a time."""
    member, shape, dtype = _open_npy(npz, name)
    if len(shape) != 2:
        member.close()
        raise ValueError(f"py3langid model: {name} is not a matrix")

    def rows() -> Any:
        with member:
            left, width = shape
            step = max(1, _CHUNK_BYTES // (dtype.itemsize * width))
            while left:
                n = min(step, left)
                data = _read_exactly(member, n * width * dtype.itemsize)
                yield np.frombuffer(data, dtype=dtype).reshape(n, width)
                left -= n

    return shape, dtype, rows()


def _read_exactly(member: IO[bytes], size: int) -> bytes:
    data = member.read(size)
    if len(data) != size:
        raise ValueError("py3langid model: truncated array")
    return data

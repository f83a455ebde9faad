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
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import numpy.typing as npt

_ROW = 256  # transitions per DFA row: one per byte value
_BLOCK = 16  # transitions per shared block; a row is _ROW // _BLOCK blocks
_CHUNK_BYTES = 256 << 10


class LanguageModel:
    """Naive-Bayes language identifier over byte n-grams found by a DFA walk (py3langid's)."""

    __slots__ = ("_alias_pairs", "_blocks", "_output", "_pc", "_ptc", "_rowbase", "_table", "classes")

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
        if text.isupper():
            text = text.lower()
        data = unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")
        visits = self._visits(data)
        if visits:
            idx = np.fromiter(visits.keys(), dtype=np.intp, count=len(visits))
            counts = np.fromiter(visits.values(), dtype=np.float32, count=len(visits))
            scores = np.log1p(counts) @ self._ptc[idx] + self._pc
        else:
            scores = np.full(len(self.classes), 0.0, dtype=np.float32)
        # The same operations in the same order as py3langid's _decide, for the same float32 bits.
        scores *= 1.0 / math.sqrt(len(data) or 1)
        np.exp(scores - scores.max(), out=scores)
        scores /= scores.sum()
        for i, j in self._alias_pairs:
            scores[i] += scores[j]
            scores[j] = 0.0
        best = int(scores.argmax())
        return self.classes[best], float(scores[best])

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

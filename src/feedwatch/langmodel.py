"""py3langid's language model in a compact form: the same answers in ~44 MB instead of ~70 MB.

py3langid (0.4) holds, per process: the DFA's transition table as ``uint32`` (37 MB, because the
automaton has ~104,600 states, more than ``uint16`` holds), two Python lists of ~104,600 ints (the
pre-shifted row offset and the feature emitted per state, ~8 MB with their int objects, whose
reference counts also copy shared pages into every forked child that reads them) and the
naive-Bayes matrix restricted to the chosen languages (float16, ~23 MB).

Here the states are renumbered by how often a transition leads to them, so that all but ~39,000
of the table's 9.8 million entries (0.4 %) name a state below 65,535 and fit ``uint16``; the rest
hold 65,535 ("escape") and their state is looked up by position in a small sorted table. The
per-state lists are ``array`` objects. The matrix, the feature order and every numpy operation of
:meth:`LanguageModel.classify` are py3langid's (``LanguageIdentifier.classify`` with
``norm_probs=True``), so labels and confidences are identical: ``tests/unit/test_language_model.py``
compares both on the labeled corpus and generated texts.

The model is read straight from py3langid's ``model.npz.xz`` one chunk at a time, so loading peaks
a few MB above the final size instead of ~35 MB above it (``LanguageIdentifier.from_model_file``
holds the unrestricted matrix and the expanded lists at once).
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
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import numpy.typing as npt

_ESCAPE = 0xFFFF  # a transition to a state numbered >= 65,535: see LanguageModel._escape_*
_CHUNK_BYTES = 256 << 10


class LanguageModel:
    """Naive-Bayes language identifier over byte n-grams found by a DFA walk (py3langid's)."""

    __slots__ = (
        "_alias_pairs",
        "_escape_pos",
        "_escape_state",
        "_nextmove",
        "_output",
        "_pc",
        "_ptc",
        "_rowbase",
        "_start",
        "classes",
    )

    def __init__(
        self,
        *,
        classes: list[str],
        ptc: npt.NDArray[Any],
        pc: npt.NDArray[Any],
        nextmove: array[int],
        escape_pos: array[int],
        escape_state: array[int],
        rowbase: array[int],
        output: array[int],
        start: int,
    ) -> None:
        self.classes = classes
        self._ptc = ptc
        self._pc = pc
        self._nextmove = nextmove
        self._escape_pos = escape_pos
        self._escape_state = escape_state
        self._rowbase = rowbase
        self._output = output
        self._start = start
        # Labels that occur twice (one language in two scripts): py3langid folds the second
        # column's probability into the first and zeroes the second.
        first: dict[str, int] = {}
        self._alias_pairs: list[tuple[int, int]] = []
        for i, label in enumerate(classes):
            if label in first:
                self._alias_pairs.append((first[label], i))
            else:
                first.setdefault(label, i)

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
        out = _read_whole(npz, "out_feat").astype(np.int64)  # DFA state -> feature or -1
        n_states = len(row)
        if len(out) != n_states:
            raise ValueError("py3langid model: one output per DFA state expected")

        # Number the states by in-degree (ties in the old order), so the most frequent targets
        # fit uint16; the start state keeps whatever number it gets.
        indegree = np.zeros(n_states, dtype=np.int64)
        for chunk in _chunks(npz, "nextmove"):
            indegree += np.bincount(chunk, minlength=n_states)
        order = np.argsort(-indegree, kind="stable")
        del indegree
        renumber = np.empty(n_states, dtype=np.int64)
        renumber[order] = np.arange(n_states, dtype=np.int64)

        nextmove = _zeros("H", _length(npz, "nextmove"))
        escape_pos, escape_state = array("I"), array("I")
        target = np.frombuffer(nextmove, dtype=np.uint16)
        start = 0
        for chunk in _chunks(npz, "nextmove"):
            states = renumber[chunk]
            escaped = np.flatnonzero(states >= _ESCAPE)
            escape_pos.frombytes((escaped + start).astype(np.uint32).tobytes())
            escape_state.frombytes(states[escaped].astype(np.uint32).tobytes())
            states[escaped] = _ESCAPE
            target[start : start + len(states)] = states
            start += len(states)
        del target  # releases the export of nextmove's buffer

        rowbase = _zeros("I", n_states)
        np.frombuffer(rowbase, dtype=np.uint32)[renumber] = row << 8
        output = _zeros("i", n_states)
        np.frombuffer(output, dtype=np.int32)[renumber] = out

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
            nextmove=nextmove,
            escape_pos=escape_pos,
            escape_state=escape_state,
            rowbase=rowbase,
            output=output,
            start=int(renumber[0]),
        )

    def nbytes(self) -> int:
        """Bytes held by the model's tables (not counting small Python objects)."""
        arrays = (self._nextmove, self._escape_pos, self._escape_state, self._rowbase, self._output)
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
        nextmove, rowbase, output = self._nextmove, self._rowbase, self._output
        escape_pos, escape_state = self._escape_pos, self._escape_state
        state = self._start
        features: list[int] = []
        append = features.append
        for byte in data:
            pos = rowbase[state] + byte
            state = nextmove[pos]
            if state == _ESCAPE:
                state = escape_state[bisect_left(escape_pos, pos)]
            feature = output[state]
            if feature >= 0:
                append(feature)
        return Counter(features) if features else None


def _release_free_heap() -> None:
    """Give the loader's freed temporaries back to the OS (glibc keeps ~20 MB of them as RSS)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
        ctypes.CDLL(None).malloc_trim(0)


def _zeros(typecode: str, length: int) -> array[int]:
    return array(typecode, [0]) * length


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


def _length(npz: zipfile.ZipFile, name: str) -> int:
    member, shape, _ = _open_npy(npz, name)
    member.close()
    return math.prod(shape)


def _chunks(npz: zipfile.ZipFile, name: str) -> Any:
    """A 1-d array's values, a few MB at a time."""
    member, shape, dtype = _open_npy(npz, name)
    with member:
        left = math.prod(shape)
        step = max(1, _CHUNK_BYTES // dtype.itemsize)
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

"""Column kernels of the validator: each finds the rows one rule flags, in as few passes as it can.

Each kernel first asks the cheap question (is the smallest value below the minimum? do all
values fall in the allowed set?) and builds a row mask only when the answer is bad, because
clean data is the common case and a mask costs a pass and a megabyte per million rows.

Numbers go through numpy views of the Arrow buffers (no copy; numpy's reductions are many times
faster than Arrow's ``min_max``); strings through Arrow's hash kernels, except chunks whose
values all have one width of at most 8 bytes (ISO country and currency codes, fixed-format
codes and ids), whose data buffer is compared as an array of integers of that width, about
five times faster than hashing. Missing means null, and in float columns also ``NaN``, as
pandas counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "FIXED_WIDTH",
    "Hits",
    "Mask",
    "NumericColumn",
    "StringKeys",
    "allowed_hits",
    "combine",
    "compared_hits",
    "distinct_values",
    "is_numeric",
    "is_stringlike",
    "new_value_hits",
    "regex_hits",
    "unique_hits",
]

Mask = npt.NDArray[np.bool_]
Values = np.ndarray[Any, Any]

_FIXED_MIN = 4096  # below this, numpy's per-call cost exceeds what hashing costs
FIXED_WIDTH = True
"""Whether string columns of one width are compared as integers (the benchmark switches it off
to measure the general path)."""


@dataclass(frozen=True, slots=True)
class Hits:
    """The rows one row-level rule flagged: how many, and which (a mask over the whole table)."""

    count: int
    mask: Mask


def combine(n: int, parts: Sequence[tuple[int, Mask | None]]) -> Hits | None:
    """Per-chunk masks (chunk start, mask or None for a clean chunk) as one table-wide result."""
    count = sum(int(np.count_nonzero(m)) for _, m in parts if m is not None)
    if count == 0:
        return None
    if len(parts) == 1 and parts[0][0] == 0 and parts[0][1] is not None and len(parts[0][1]) == n:
        return Hits(count, parts[0][1])  # one chunk: its mask already covers the table
    full = np.zeros(n, dtype=np.bool_)
    for start, m in parts:
        if m is not None:
            full[start : start + len(m)] = m
    return Hits(count, full)


def _chunks(col: pa.ChunkedArray) -> list[tuple[int, pa.Array]]:
    out, start = [], 0
    for chunk in col.chunks:
        if len(chunk):
            out.append((start, chunk))
        start += len(chunk)
    return out


def _valid(chunk: pa.Array) -> Mask | None:
    if chunk.null_count == 0:
        return None
    valid: Mask = chunk.is_valid().to_numpy(zero_copy_only=False)
    return valid


def is_numeric(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype))


def is_stringlike(dtype: pa.DataType) -> bool:
    t = pa.types
    return bool(t.is_string(dtype) or t.is_large_string(dtype) or t.is_binary(dtype) or t.is_large_binary(dtype))


def _numpy_dtype(dtype: pa.DataType) -> np.dtype[Any]:
    if pa.types.is_floating(dtype):
        return np.dtype(f"<f{dtype.bit_width // 8}")
    kind = "i" if pa.types.is_signed_integer(dtype) else "u"
    return np.dtype(f"<{kind}{dtype.bit_width // 8}")


class NumericColumn:
    """An integer or float column seen through numpy, chunk by chunk, with missing values and
    the extremes computed once and shared by every rule on the column."""

    def __init__(self, col: pa.ChunkedArray) -> None:
        self.n = len(col)
        self.is_float = pa.types.is_floating(col.type)
        dtype = _numpy_dtype(col.type)
        self.parts: list[tuple[int, Values, Mask | None]] = []
        for start, chunk in _chunks(col):
            # The raw buffer, not to_numpy(): with nulls, to_numpy copies (and ints become floats).
            values = np.frombuffer(
                chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize
            )
            self.parts.append((start, values, _valid(chunk)))
        self._missing: list[tuple[int, Mask | None]] | None = None
        self._extremes: tuple[Any, Any] | None = None

    def _scan(self) -> None:
        missing: list[tuple[int, Mask | None]] = []
        lo: Any = None
        hi: Any = None
        for start, values, valid in self.parts:
            if valid is None:
                cmin, cmax = values.min(), values.max()
                if self.is_float and (np.isnan(cmin) or np.isnan(cmax)):
                    # NaN propagates through min/max, so the clean case costs no isnan pass.
                    missing.append((start, np.isnan(values)))
                    cmin, cmax = np.fmin.reduce(values), np.fmax.reduce(values)
                else:
                    missing.append((start, None))
            else:
                absent = ~valid
                if self.is_float:
                    absent |= np.isnan(values)
                missing.append((start, absent))
                present = values[~absent]
                if not len(present):
                    continue
                cmin, cmax = present.min(), present.max()
            if self.is_float and np.isnan(cmin):
                continue  # every value of the chunk is NaN
            lo = cmin if lo is None or cmin < lo else lo
            hi = cmax if hi is None or cmax > hi else hi
        self._missing = missing
        self._extremes = (lo, hi)

    @property
    def extremes(self) -> tuple[Any, Any]:
        """(min, max) over the present values, ``(None, None)`` when there are none."""
        if self._extremes is None:
            self._scan()
        assert self._extremes is not None
        return self._extremes

    def missing(self) -> Hits | None:
        """Rows that are null (or NaN)."""
        if self._missing is None:
            self._scan()
        assert self._missing is not None
        return combine(self.n, self._missing)

    def below(self, bound: float) -> Hits | None:
        lo, _ = self.extremes
        if lo is None or lo >= bound:
            return None
        return self._where(lambda v: v < bound)

    def above(self, bound: float) -> Hits | None:
        _, hi = self.extremes
        if hi is None or hi <= bound:
            return None
        return self._where(lambda v: v > bound)

    def _where(self, test: Callable[[Values], Mask]) -> Hits | None:
        # NaN compares false, so a NaN is never out of range (it is counted as missing instead).
        parts: list[tuple[int, Mask | None]] = []
        for start, values, valid in self.parts:
            bad = test(values)
            parts.append((start, bad if valid is None else bad & valid))
        return combine(self.n, parts)

    def duplicated(self) -> Hits | None:
        """Rows whose value another row has too (missing values are never duplicates)."""
        if self.n < 2:
            return None
        if not self.is_float and all(valid is None for _, _, valid in self.parts) and self._increasing():
            return None  # row ids usually arrive sorted: one comparison pass proves them unique
        lo, hi = self.extremes
        if lo is None:
            return None
        values = self.parts[0][1] if len(self.parts) == 1 else np.concatenate([v for _, v, _ in self.parts])
        missing = self.missing()
        present = None if missing is None else ~missing.mask
        kept = values if present is None else values[present]
        if not self.is_float and int(hi) - int(lo) <= 4 * len(kept):
            # Dense integers (ids, counters): counting beats sorting by an order of magnitude.
            # Fresh pages cost more than the arithmetic here, hence no offset copy when the
            # values can index the counts themselves.
            direct = kept.dtype == np.intp and int(lo) >= 0 and int(hi) <= 4 * len(kept)
            codes = kept if direct else (kept - lo).astype(np.intp, copy=False)
            repeated_value = np.bincount(codes) > 1
            if not repeated_value.any():
                return None
            repeated_at: Mask = repeated_value[codes]
        else:
            ordered = np.sort(kept)
            repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
            if not len(repeated):
                return None
            repeated_at = np.isin(kept, repeated)
        if present is None:
            dup = repeated_at
        else:
            dup = np.zeros(self.n, dtype=np.bool_)
            dup[present] = repeated_at
        count = int(np.count_nonzero(dup))
        return Hits(count, dup) if count else None

    def _increasing(self) -> bool:
        last = None
        for _, values, _ in self.parts:
            head = values[:1024]  # an unsorted column usually shows it early: skip the full pass
            if len(head) > 1 and not bool((head[1:] > head[:-1]).all()):
                return False
            if len(values) > 1 and not bool((values[1:] > values[:-1]).all()):
                return False
            if last is not None and not values[0] > last:
                return False
            last = values[-1]
        return True


_KEY_TYPES: dict[int, np.dtype[Any]] = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 3: np.dtype("<u4"), 4: np.dtype("<u4")}


def _key_type(width: int) -> np.dtype[Any]:
    return _KEY_TYPES.get(width, np.dtype("<u8"))


class StringKeys:
    """Allowed strings as little-endian integers of their byte width (at most 8), for comparing
    a column of one width without hashing: its data buffer already *is* an integer array
    (widths 1, 2, 4, 8) or becomes one with a strided load (the other widths)."""

    def __init__(self, values: Sequence[str | bytes]) -> None:
        by_width: dict[int, list[int]] = {}
        for v in values:
            raw = v.encode() if isinstance(v, str) else bytes(v)
            if 0 < len(raw) <= 8:
                by_width.setdefault(len(raw), []).append(int.from_bytes(raw, "little"))
        self.by_width = {w: np.unique(np.array(keys, dtype=_key_type(w))) for w, keys in by_width.items()}

    def outside(self, chunk: pa.Array) -> Mask | None:
        """Rows of ``chunk`` (no nulls) not in the set, or None when its values differ in width."""
        n = len(chunk)
        large = pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type)
        offset_type = np.dtype("<i8") if large else np.dtype("<i4")
        buffers = chunk.buffers()
        offsets: Values = np.frombuffer(
            buffers[1], dtype=offset_type, count=n + 1, offset=chunk.offset * offset_type.itemsize
        )
        first, total = int(offsets[0]), int(offsets[-1]) - int(offsets[0])
        width = total // n
        if not 0 < width <= 8 or total != width * n:
            return None
        if n > 1 and int((offsets[1:] - offsets[:-1]).max()) != width:
            return None  # the same total from different widths
        allowed = self.by_width.get(width)
        if allowed is None:
            return np.ones(n, dtype=np.bool_)
        data = np.frombuffer(buffers[2], dtype=np.uint8)
        key_type = _key_type(width)
        if key_type.itemsize == width:
            keys = data[first : first + total].view(key_type)
        else:
            keys = self._strided(data, first, n, width, key_type)
        outside: Mask = ~np.isin(keys, allowed)
        return outside

    @staticmethod
    def _strided(data: Values, first: int, n: int, width: int, key_type: np.dtype[Any]) -> Values:
        # One load of the key type's size per value, stepping by the width, masked to the width;
        # the last values, too close to the buffer's end for a full load, come from a padded copy.
        size = key_type.itemsize
        keep = key_type.type((1 << (8 * width)) - 1)
        keys = np.empty(n, dtype=key_type)
        whole = max(0, min(n, (len(data) - size - first) // width + 1))
        if whole:
            loads = np.ndarray((whole,), dtype=key_type, buffer=data, offset=first, strides=(width,))
            np.bitwise_and(loads, keep, out=keys[:whole])
        if whole < n:
            tail = np.zeros((n - whole) * width + size, dtype=np.uint8)
            start = first + whole * width
            tail[: (n - whole) * width] = data[start : start + (n - whole) * width]
            loads = np.ndarray((n - whole,), dtype=key_type, buffer=tail, offset=0, strides=(width,))
            keys[whole:] = loads & keep
        return keys


def _dictionary_test(chunk: pa.DictionaryArray, bad_values: Callable[[pa.Array], Mask]) -> Mask:
    """Evaluate a per-value test on the dictionary once, then map it to rows by index."""
    bad_codes = np.flatnonzero(bad_values(chunk.dictionary))
    indices = chunk.indices.to_numpy(zero_copy_only=False) if chunk.null_count else chunk.indices.to_numpy()
    if not len(bad_codes):
        return np.zeros(len(chunk), dtype=np.bool_)
    bad: Mask = np.isin(indices, bad_codes)
    valid = _valid(chunk)
    return bad if valid is None else bad & valid


def allowed_hits(col: pa.ChunkedArray, allowed: pa.Array, keys: StringKeys | None) -> Hits | None:
    """Rows whose value is not in ``allowed`` (nulls are the nullability rule's business)."""

    def outside(values: pa.Array) -> Mask:
        inside: Mask = pc.is_in(values, value_set=allowed).to_numpy(zero_copy_only=False)
        return ~inside

    parts: list[tuple[int, Mask | None]] = []
    for start, chunk in _chunks(col):
        if pa.types.is_dictionary(chunk.type):
            parts.append((start, _dictionary_test(chunk, outside)))
            continue
        if (
            FIXED_WIDTH
            and keys is not None
            and len(chunk) >= _FIXED_MIN
            and chunk.null_count == 0
            and is_stringlike(chunk.type)
        ):
            fast = keys.outside(chunk)
            if fast is not None:
                parts.append((start, fast))
                continue
        inside = pc.is_in(chunk, value_set=allowed)
        if inside.true_count == len(chunk) - chunk.null_count:
            parts.append((start, None))  # nulls test false, so every present value is allowed
            continue
        bad = ~inside.to_numpy(zero_copy_only=False)
        valid = _valid(chunk)
        parts.append((start, bad if valid is None else bad & valid))
    return combine(len(col), parts)


def compared_hits(col: pa.ChunkedArray, *, below: float | None = None, above: float | None = None) -> Hits | None:
    """Rows below or above a bound, through Arrow's comparisons: for decimals, which numpy has no
    view of."""
    test = pc.less(col, pa.scalar(below)) if below is not None else pc.greater(col, pa.scalar(above))
    parts = [(start, pc.fill_null(chunk, False).to_numpy(zero_copy_only=False)) for start, chunk in _chunks(test)]
    return combine(len(col), parts)


def regex_hits(col: pa.ChunkedArray, pattern: str) -> Hits | None:
    """Rows whose text does not contain a match of ``pattern`` (RE2; anchor with ^ and $)."""

    def outside(values: pa.Array) -> Mask:
        found: Mask = pc.fill_null(pc.match_substring_regex(values, pattern=pattern), True).to_numpy(
            zero_copy_only=False
        )
        return ~found

    parts: list[tuple[int, Mask | None]] = []
    for start, chunk in _chunks(col):
        parts.append(
            (start, _dictionary_test(chunk, outside) if pa.types.is_dictionary(chunk.type) else outside(chunk))
        )
    return combine(len(col), parts)


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(col.type):
        return col.cast(col.type.value_type)
    return col


def distinct_values(col: pa.ChunkedArray) -> pa.Array:
    """The distinct non-null values of a column."""
    values = pc.unique(_plain(col))
    return values.drop_null() if values.null_count else values


def unique_hits(col: pa.ChunkedArray) -> Hits | None:
    """Rows whose (non-null) value another row has too, for columns numpy cannot sort."""
    plain = _plain(col)
    valid_count = len(plain) - plain.null_count
    if len(distinct_values(plain)) == valid_count:
        return None
    counts = pc.value_counts(plain)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1)).drop_null()
    mask: Mask = pc.fill_null(pc.is_in(plain, value_set=repeated), False).to_numpy(zero_copy_only=False)
    if plain.null_count:
        mask &= plain.is_valid().to_numpy(zero_copy_only=False)
    return Hits(int(np.count_nonzero(mask)), mask)


def new_value_hits(col: pa.ChunkedArray, known: pa.Array) -> Hits | None:
    """Rows whose (non-null) value is not among ``known`` (a reference version's values)."""
    plain = _plain(col)
    inside = pc.is_in(plain, value_set=known)
    mask: Mask = ~pc.fill_null(inside, True).to_numpy(zero_copy_only=False)
    if plain.null_count:
        mask &= plain.is_valid().to_numpy(zero_copy_only=False)
    count = int(np.count_nonzero(mask))
    return Hits(count, mask) if count else None

"""Vectorised building blocks both synthetic catalogues (and their interactions) share: per-row picks from
padded per-leaf tables, weighted draws within groups, text from `{word}` templates over Arrow string arrays, ids."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def padded_table(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged lists of ids as ((L, K) ids zero-padded to the longest list, (L,) counts), for `pick_from`."""
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    table = np.zeros((len(rows), counts.max()), dtype=np.int32)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return table, counts


def group_ids(groups, field: str) -> tuple[np.ndarray, np.ndarray]:
    """The padded table (`padded_table`) of each group's `field` list as ids into the concatenation of every
    group's list, in group order (the words of leaf i are ids start_i .. start_i + len - 1)."""
    rows, start = [], 0
    for group in groups:
        size = len(getattr(group, field))
        rows.append(list(range(start, start + size)))
        start += size
    return padded_table(rows)


def strings(words) -> pa.Array:
    """Any iterable of str as an Arrow string array."""
    return pa.array(list(words), type=pa.string())


def pick_from(table: tuple[np.ndarray, np.ndarray], leaf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each row, a uniformly chosen entry of its leaf's list. table: ((L, K) ids, (L,) counts); leaf, u: (n,)."""
    ids, counts = table
    return ids[leaf, (u * counts[leaf]).astype(np.int64)]


class GroupSampler:
    """Vectorised draws of an element of a group with probability proportional to the element's weight.

    groups: (n,) int group of each element in [0, n_groups); weights: (n,) non-negative float.
    `sample(group, u)` with group, u: (m,) returns (m,) element indices; only valid where `total[group] > 0`.
    """

    def __init__(self, groups: np.ndarray, weights: np.ndarray, n_groups: int):
        self.order = np.argsort(groups, kind="stable")
        self.cum = np.cumsum(weights[self.order], dtype=np.float64)
        bounds = np.searchsorted(groups[self.order], np.arange(n_groups + 1))
        cum0 = np.concatenate([[0.0], self.cum])
        self.start, self.end = bounds[:-1], bounds[1:]
        self.lo, self.hi = cum0[self.start], cum0[self.end]
        self.total = self.hi - self.lo

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        x = self.lo[group] + u * self.total[group]
        pos = np.searchsorted(self.cum, x, side="right")
        return self.order[np.clip(pos, self.start[group], np.maximum(self.end[group] - 1, 0))]


def join_text(*parts) -> pa.Array:
    """Element-wise concatenation of string arrays and scalars."""
    return pc.binary_join_element_wise(*parts, "")


def by_template(template: np.ndarray, n_templates: int, build) -> pa.Array:
    """Strings built per template: build(k, rows) -> pa string array for the rows (indices) using template k;
    returns the (n,) array in row order."""
    order = np.argsort(template, kind="stable")
    bounds = np.searchsorted(template[order], np.arange(n_templates + 1))
    pieces = [build(k, order[bounds[k]:bounds[k + 1]]) for k in range(n_templates) if bounds[k + 1] > bounds[k]]
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return pc.take(pa.concat_arrays(pieces), pa.array(inverse))


def fill_template(template: str, words: dict, rows: np.ndarray) -> pa.Array:
    """(len(rows),) strings of `template` with each "{name}" filled by `words[name](rows)` (a string array for
    those rows); everything else in the template is literal."""
    parts = []
    for i, chunk in enumerate(template.replace("}", "{").split("{")):
        if i % 2:
            parts.append(words[chunk](rows))
        elif chunk:
            parts.append(chunk)
    return join_text(*parts) if len(parts) > 1 else pc.cast(parts[0], pa.string())


def make_ids(prefix: str, n: int) -> pa.Array:
    """(n,) ids prefix + zero-padded 0..n-1, e.g. SKU000042."""
    width = max(4, len(str(max(n - 1, 0))))
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), width=width, padding="0")
    return join_text(prefix, digits)


def first_occurrence(key: np.ndarray) -> np.ndarray:
    """Sorted indices of the first occurrence of each key value. key: (n,)."""
    _, first = np.unique(key, return_index=True)
    return np.sort(first)

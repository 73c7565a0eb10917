"""Offline ranking metrics (DESIGN.md "Metrics at K"), vectorised over all users with numpy / scipy.sparse.

Evaluated users are those with a non-empty ground truth; every other user is ignored by every metric. All work is
done on whole arrays (no Python loop over users); memory is O(n_users·L + nnz(truth) + n_items).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse

# every metric `ranking_metrics` reports at each K, in the quality table's column order
METRIC_NAMES = ("recall", "ndcg", "hit", "tail_recall", "cold_recall", "coverage", "aplt", "gini", "novelty")
USER_METRICS = ("recall", "ndcg", "hit")  # means over every evaluated user of a per-user value


def _canonical_truth(truth: scipy.sparse.spmatrix | scipy.sparse.sparray) -> scipy.sparse.csr_matrix:
    """Binary CSR copy with sorted, de-duplicated indices and no explicit zeros."""
    t = scipy.sparse.csr_matrix(truth, copy=True)
    t.sum_duplicates()
    t.data = (t.data != 0).astype(np.int8)
    t.eliminate_zeros()
    t.sort_indices()
    return t


def _truth_keys(truth: scipy.sparse.csr_matrix) -> np.ndarray:
    """Sorted int64 keys `user * n_items + item` of the non-zeros of a canonical CSR matrix."""
    n_users, n_items = truth.shape
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(truth.indptr))
    return rows * np.int64(n_items) + truth.indices.astype(np.int64)


def _isin_sorted(sorted_keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Boolean array, same shape as `query`: whether each key occurs in `sorted_keys` (ascending)."""
    if sorted_keys.size == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.searchsorted(sorted_keys, query)
    np.minimum(pos, sorted_keys.size - 1, out=pos)
    return sorted_keys[pos] == query


def _check_item_vectors(n_items: int, **arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        if a.shape != (n_items,):
            raise ValueError(f"{name} must have shape ({n_items},), got {a.shape}")


def _safe_mean(num: np.ndarray, den: np.ndarray) -> float:
    """Mean of num/den over entries (den > 0 everywhere); 0.0 for an empty array."""
    if num.size == 0:
        return 0.0
    return float(np.mean(num / den))


def ranking_metrics(rec_items: np.ndarray, truth: scipy.sparse.csr_matrix, pop: np.ndarray, is_tail: np.ndarray,
                    is_cold: np.ndarray, n_hist_users: int, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """Ranking, long-tail and diversity metrics at every K in `ks`.

    rec_items: int array (n_users, L) of item indices, each row a ranked list, padded with -1 (L may be < or > K;
    an item appears at most once per row). truth: (n_users, n_items) binary CSR of ground truth.
    pop: (n_items,) int popularity; is_tail, is_cold: (n_items,) bool.
    Returns keys "recall@K", "ndcg@K", "hit@K", "tail_recall@K", "cold_recall@K", "coverage@K", "aplt@K",
    "gini@K", "novelty@K" for every K, plus "users" (evaluated users), "tail_users", "cold_users".

    Means are over evaluated users (non-empty ground truth); tail/cold recall are over the evaluated users with at
    least one tail/cold ground-truth item (0.0 where there is none). Coverage, Gini and Novelty use only the top-K
    lists of evaluated users. Counts ("users", "tail_users", "cold_users") are ints.
    """
    rec_items = np.asarray(rec_items)
    if rec_items.ndim != 2:
        raise ValueError(f"rec_items must be 2-D (n_users, L), got shape {rec_items.shape}")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks}")
    truth = _canonical_truth(truth)
    n_users, n_items = truth.shape
    if rec_items.shape[0] != n_users:
        raise ValueError(f"rec_items has {rec_items.shape[0]} rows but truth has {n_users}")
    pop, is_tail, is_cold = np.asarray(pop), np.asarray(is_tail, dtype=bool), np.asarray(is_cold, dtype=bool)
    _check_item_vectors(n_items, pop=pop, is_tail=is_tail, is_cold=is_cold)

    # Restrict everything to evaluated users (non-empty ground truth).
    g_size_all = np.diff(truth.indptr)
    evaluated = np.flatnonzero(g_size_all > 0)
    n_eval = int(evaluated.size)
    truth = truth[evaluated]
    g_size = g_size_all[evaluated].astype(np.float64)
    g_tail = np.asarray(truth @ is_tail.astype(np.int64)).ravel()
    g_cold = np.asarray(truth @ is_cold.astype(np.int64)).ravel()
    tail_users = g_tail > 0
    cold_users = g_cold > 0

    k_max = max(ks)
    R, valid, safe, hit = _hits(rec_items[evaluated, :k_max], truth)
    tail_rec = is_tail[safe] & valid
    hit_tail = hit & tail_rec
    hit_cold = hit & is_cold[safe]
    surprisal = -np.log2((pop.astype(np.float64) + 1.0) / (float(n_hist_users) + 1.0))

    width = R.shape[1]

    out: dict[str, float] = {"users": n_eval, "tail_users": int(tail_users.sum()), "cold_users": int(cold_users.sum())}
    for k in ks:
        w = min(k, width)
        if n_eval == 0:
            for name in METRIC_NAMES:
                out[f"{name}@{k}"] = 0.0
            continue
        for name in USER_METRICS:
            out[f"{name}@{k}"] = float(np.mean(_user_accuracy(hit, g_size, name, k)))
        out[f"tail_recall@{k}"] = _safe_mean(hit_tail[tail_users, :w].sum(axis=1), g_tail[tail_users])
        out[f"cold_recall@{k}"] = _safe_mean(hit_cold[cold_users, :w].sum(axis=1), g_cold[cold_users])

        out.update(_exposure_metrics(R[:, :w][valid[:, :w]], tail_rec[:, :w], surprisal, n_items, k))
    return out


def _hits(rec_items: np.ndarray, truth: scipy.sparse.csr_matrix) -> tuple[np.ndarray, ...]:
    """(R, valid, safe, hit) of lists (n, L) against a canonical truth with n rows: R the checked int64 lists,
    `valid` where R holds an item, `safe` R with padding mapped to item 0, `hit` where the item is in the truth.
    Shared by the pooled metrics and the per-user values, so a paired comparison counts hits as the tables do."""
    n_items = truth.shape[1]
    R = _checked_recs(rec_items, n_items)
    valid = R >= 0
    safe = np.where(valid, R, 0)  # padding mapped to item 0, always masked by `valid`
    keys = np.arange(R.shape[0], dtype=np.int64)[:, None] * np.int64(n_items) + safe
    hit = _isin_sorted(_truth_keys(truth), keys) & valid
    return R, valid, safe, hit


def _user_accuracy(hit: np.ndarray, g_size: np.ndarray, name: str, k: int) -> np.ndarray:
    """Per-user recall, NDCG or hit at k (n,) from the hit matrix (n, L) and each user's truth size (n,)."""
    h = hit[:, :min(k, hit.shape[1])]
    if name == "ndcg":
        disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # disc[r-1] = 1/log2(r+1)
        ideal = np.cumsum(disc)[np.minimum(g_size.astype(np.int64), k) - 1]
        return (h @ disc[:h.shape[1]]) / ideal
    n_hit = h.sum(axis=1)
    return n_hit / g_size if name == "recall" else (n_hit > 0).astype(np.float64)


def user_accuracy(rec_items: np.ndarray, truth: scipy.sparse.csr_matrix, name: str, k: int) -> np.ndarray:
    """Per evaluated user (non-empty truth, in row order), `name`@k for name in `USER_METRICS`: the values whose
    mean `ranking_metrics` reports, for paired comparisons of two systems on the same users. Shape (n_evaluated,)."""
    if name not in USER_METRICS:
        raise ValueError(f"per-user values exist for {USER_METRICS}, not {name!r}")
    truth = _canonical_truth(truth)
    if np.shape(rec_items)[0] != truth.shape[0]:
        raise ValueError(f"rec_items has {np.shape(rec_items)[0]} rows but truth has {truth.shape[0]}")
    g_size_all = np.diff(truth.indptr)
    evaluated = np.flatnonzero(g_size_all > 0)
    _, _, _, hit = _hits(np.asarray(rec_items)[evaluated, :k], truth[evaluated])
    return _user_accuracy(hit, g_size_all[evaluated].astype(np.float64), name, k)


def _checked_recs(recs: np.ndarray, n_items: int) -> np.ndarray:
    """int64 copy of ranked lists (n, L), checked: indices in [0, n_items) or -1, no repeats within a row."""
    R = recs.astype(np.int64)
    if R.size and (R.min() < -1 or R.max() >= n_items):
        raise ValueError(f"rec_items must hold item indices in [0, {n_items}) or -1 padding")
    if R.shape[1] > 1:
        srt = np.sort(R, axis=1)
        if np.any((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)):
            raise ValueError("an item appears more than once in a row of rec_items")
    return R


def _exposure_metrics(items: np.ndarray, tail_rec: np.ndarray, surprisal: np.ndarray, n_items: int,
                      k: int) -> dict[str, float]:
    """Coverage, APLT, Gini and Novelty at k from every recommended (user, item) pair of the top-k (`items`) and
    the (users, w) tail flags of the lists."""
    exposure = np.bincount(items, minlength=n_items)
    total = exposure.sum()
    gini = 0.0
    if total:
        x = np.sort(exposure).astype(np.float64)
        i = np.arange(1, n_items + 1, dtype=np.float64)
        gini = float(np.sum((2.0 * i - n_items - 1.0) * x) / (n_items * float(total)))
    return {f"coverage@{k}": float(np.count_nonzero(exposure)) / n_items,
            f"aplt@{k}": float(np.mean(tail_rec.sum(axis=1) / k)), f"gini@{k}": gini,
            f"novelty@{k}": float(surprisal[items].mean()) if items.size else 0.0}


def candidate_recall(
    cand_users: np.ndarray, cand_items: np.ndarray, truth: scipy.sparse.csr_matrix, is_tail: np.ndarray
) -> dict[str, float]:
    """Share of ground-truth items present in a candidate set: candidates given as parallel int arrays of
    (user index, item index) pairs (duplicates allowed). Returns {"recall": mean over evaluated users of
    |C∩G|/|G|, "tail_recall": same over users with G_tail ≠ ∅ restricted to tail items, "candidates_per_user":
    mean number of distinct candidates per evaluated user}.

    Evaluated users are those with a non-empty ground truth; candidates of other users are ignored. Each value is
    0.0 where there is no user to average over.
    """
    truth = _canonical_truth(truth)
    n_users, n_items = truth.shape
    cand_users = np.asarray(cand_users, dtype=np.int64).ravel()
    cand_items = np.asarray(cand_items, dtype=np.int64).ravel()
    if cand_users.shape != cand_items.shape:
        raise ValueError("cand_users and cand_items must have the same length")
    if cand_users.size and (cand_users.min() < 0 or cand_users.max() >= n_users):
        raise ValueError(f"cand_users must be in [0, {n_users})")
    if cand_items.size and (cand_items.min() < 0 or cand_items.max() >= n_items):
        raise ValueError(f"cand_items must be in [0, {n_items})")
    is_tail = np.asarray(is_tail, dtype=bool)
    _check_item_vectors(n_items, is_tail=is_tail)

    g_size = np.diff(truth.indptr)
    g_tail = np.asarray(truth @ is_tail.astype(np.int64)).ravel()
    evaluated = g_size > 0
    tail_users = g_tail > 0

    # distinct (user, item) candidates as sorted keys (explicit sort + dedupe: np.unique is far slower in numpy 2.x)
    keys = cand_users * np.int64(n_items) + cand_items
    keys.sort()
    if keys.size > 1:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    users = keys // n_items
    items = keys % n_items
    hit = _isin_sorted(_truth_keys(truth), keys)
    n_cand = np.bincount(users, minlength=n_users)
    n_hit = np.bincount(users[hit], minlength=n_users)
    n_hit_tail = np.bincount(users[hit & is_tail[items]], minlength=n_users)
    return {
        "recall": _safe_mean(n_hit[evaluated], g_size[evaluated]),
        "tail_recall": _safe_mean(n_hit_tail[tail_users], g_tail[tail_users]),
        "candidates_per_user": float(n_cand[evaluated].mean()) if evaluated.any() else 0.0,
    }

"""Rerank: tail-aware greedy re-ranking of each user's ranked candidates with one knob `tail_weight` ∈ [0, 1].

- `xquad` (Abdollahpouri et al. 2019, personalised xQuAD over the aspects {head, tail}):
  score(i | S) = (1 − λ)·rel(i) + λ·Σ_a P(a|u)·1[i ∈ a]·(1 − |S ∩ a| / (|S| + 1)),
  where P(tail|u) is the user's tail appetite (smoothed share of tail items in the history) and the last factor
  is a smooth "aspect not yet covered" term.
- `xquad_tail`: the same with P(tail|u) = appetite^(1 − λ): calibrated to the user's appetite at small λ,
  pushed towards the tail as λ grows (λ = 1 without exposure costs: tail items first). Plain xQuAD can never make
  a list more tail than the user's history; this reaches the tail candidates deep in the union (measured: a
  wider NDCG / tail recall / coverage frontier on the bundled data and both synthetic profiles, `README.md`).
- `calibrated` (calibrated popularity, Abdollahpouri et al. 2021): score(i | S) = (1 − λ)·rel(i) −
  λ·JS(P_u, Q(S ∪ {i})), the Jensen-Shannon divergence between the user's {head, tail} distribution (the tail
  appetite) and the list's. Like plain xQuAD it matches the user's appetite and never goes past it.
- `mmr` (Carbonell & Goldstein 1998) over item embeddings:
  score(i | S) = (1 − λ)·rel(i) − λ·max_{j∈S} cos(i, j).

Exposure awareness (every method but mmr): items already shown to many users cost more. Above a tail_weight
`start` the objective also subtracts w(λ)·c_s(i), w(λ) = strength·((λ − start) / (1 − start))², where c_s(i) is the
item's exposure before step s: the number of users of the population whose list already holds it, over the most
exposed item's count. The population's lists are built step-synchronously (every user's s-th item is chosen
against the exposure of steps < s), so the costs of each step (the exposure path, (K + 1, n_items): row s for
step s, the last row the exposure after all K steps, for lists longer than K) replay any one user's list exactly:
serving re-ranks a request with the path the batch job recorded. The cost applies to head and tail candidates
alike, so at λ = 1 an exposed tail item can lose to an unexposed head item. Measured (README, magazines profile):
the curve's best Coverage@10 0.53 without exposure, 0.90 with it (at tail_weight 0.9); below `start` nothing
changes.

rel = the ranker score min-max scaled per user over the top `depth` candidates. λ = 0 keeps the ranker order.
All users are re-ranked at once: arrays (n_users, depth), K greedy steps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ray_longtail.config import RERANK_METHODS


def candidate_matrix(lists: pd.DataFrame, depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long (user, item, score) -> (users (u,), items (u, depth) -1 padded, scores (u, depth) -inf padded),
    each row sorted by descending score (ties: lower item index)."""
    users, items, scores, _ = ranked_rows(lists["user"].to_numpy(), lists["item"].to_numpy(),
                                          lists["score"].to_numpy(np.float64), depth)
    return users, items, scores


def ranked_rows(users: np.ndarray, items: np.ndarray, scores: np.ndarray, depth: int,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows (user, item, score) -> (users (u,), items (u, depth) -1 padded, scores (u, depth) -inf padded,
    rows (u, depth): the input row of each cell, -1 padded), each user's cells by descending score (ties: lower
    item index; NaN scores last)."""
    order = np.lexsort((items, -scores, users))
    sorted_users = users[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_users[1:] != sorted_users[:-1]
    starts = np.flatnonzero(first)
    row = np.cumsum(first) - 1
    position = np.arange(len(order)) - starts[row]
    keep = position < depth
    order, row, position = order[keep], row[keep], position[keep]
    out_items = np.full((len(starts), depth), -1, dtype=np.int64)
    out_scores = np.full((len(starts), depth), -np.inf, dtype=np.float64)
    out_rows = np.full((len(starts), depth), -1, dtype=np.int64)
    out_items[row, position] = items[order]
    out_scores[row, position] = scores[order]
    out_rows[row, position] = order
    return sorted_users[starts], out_items, out_scores, out_rows


def global_tail_share(binary_history, is_tail: np.ndarray) -> float:
    """Share of tail items among all history interactions (the prior of every user's tail appetite)."""
    return float(np.asarray(binary_history @ is_tail.astype(np.float32)).sum() / max(binary_history.sum(), 1))


def tail_appetite(binary_history, is_tail: np.ndarray, users: np.ndarray, prior: float = 1.0,
                  global_share: float | None = None) -> np.ndarray:
    """P(tail | u): share of tail items in the user's history, smoothed towards the catalog-wide share
    (`global_share`, default: that of `binary_history`)."""
    rows = binary_history[users]
    tail_counts = np.asarray(rows @ is_tail.astype(np.float32)).ravel()
    totals = np.asarray(rows.sum(axis=1)).ravel()
    if global_share is None:
        global_share = global_tail_share(binary_history, is_tail)
    return (tail_counts + prior * global_share) / (totals + prior)


def exposure_weight(tail_weight: float, strength: float, start: float) -> float:
    """w(λ): 0 up to `start`, rising quadratically to `strength` at λ = 1."""
    if strength <= 0 or tail_weight <= start:
        return 0.0
    return float(strength * ((tail_weight - start) / (1.0 - start)) ** 2)


def rerank(users: np.ndarray, items: np.ndarray, scores: np.ndarray, k: int, tail_weight: float,
           method: str = "xquad", is_tail: np.ndarray | None = None, appetite: np.ndarray | None = None,
           vectors: np.ndarray | None = None, *, exposure_cost: float = 0.0,
           exposure_path: np.ndarray | None = None) -> pd.DataFrame:
    """Greedy top-k selection per user; returns long (user, item, rank, score, position) with score = the ranker
    score and position = the item's column in `items`."""
    chosen = greedy_positions(items, scores, k, tail_weight, method, is_tail, appetite, vectors,
                              exposure_cost=exposure_cost, exposure_path=exposure_path)
    user_idx, rank_idx = np.nonzero(chosen >= 0)
    position = chosen[user_idx, rank_idx]
    return pd.DataFrame({"user": users[user_idx], "item": items[user_idx, position],
                         "rank": (rank_idx + 1).astype(np.int32),
                         "score": scores[user_idx, position].astype(np.float32), "position": position})


def greedy_positions(items: np.ndarray, scores: np.ndarray, k: int, tail_weight: float, method: str = "xquad",
                     is_tail: np.ndarray | None = None, appetite: np.ndarray | None = None,
                     vectors: np.ndarray | None = None, *, exposure_cost: float = 0.0,
                     exposure_path: np.ndarray | None = None) -> np.ndarray:
    """The re-ranker's choice: (n_users, min(k, depth)) columns of `items` in list order, -1 padded.

    `exposure_cost` = w(λ) (`exposure_weight`); with it, `exposure_path` (steps, n_items) gives each step's item
    costs (steps past its end use its last row; items past its width cost 0), and without a path (or an empty
    one) the rows are the population whose exposure is counted as its lists are built (`exposure_path` records
    that path)."""
    chosen, _ = _greedy(items, scores, k, tail_weight, method, is_tail, appetite, vectors, exposure_cost,
                        exposure_path)
    return chosen


def exposure_path(items: np.ndarray, scores: np.ndarray, k: int, tail_weight: float, method: str,
                  is_tail: np.ndarray, appetite: np.ndarray, exposure_cost: float) -> np.ndarray:
    """(min(k, depth) + 1, n_items) float32: the item costs each greedy step of this population of users saw, and
    the exposure after the last step (what a longer list's later steps see)."""
    _, path = _greedy(items, scores, k, tail_weight, method, is_tail, appetite, None, exposure_cost, None)
    return path


def _relevance(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores min-max scaled per user over the valid cells (padding: 0)."""
    valid = items >= 0
    finite = np.where(valid, scores, np.nan)
    low, high = np.nanmin(finite, axis=1, keepdims=True), np.nanmax(finite, axis=1, keepdims=True)
    rel = np.where(valid, (scores - low) / np.where(high > low, high - low, 1.0), 0.0)
    return np.nan_to_num(rel, nan=0.0)


class _PopularityAspects:
    """The head/tail state of the xQuAD family and of calibrated popularity over one greedy pass: each user's
    target tail share and how many tail items their list holds so far."""

    def __init__(self, method: str, items: np.ndarray, valid: np.ndarray, is_tail: np.ndarray | None,
                 appetite: np.ndarray | None, lam: float):
        if is_tail is None or appetite is None:
            raise ValueError(f"{method} needs is_tail and appetite")
        self.method = method
        self.target = np.asarray(appetite, dtype=np.float64)
        if method == "xquad_tail":
            self.target = self.target ** (1.0 - lam)
        self.cand_tail = np.where(valid, is_tail[np.maximum(items, 0)], False)
        self.cell_value = np.arange(len(items))[:, None] * 2 + self.cand_tail  # index into (head, tail) per user
        self.tail_selected = np.zeros(len(items))

    def term(self, step: int, scale: float = 1.0) -> np.ndarray:
        """(n_users, depth) `scale` x what each candidate adds to the list's aspect objective at this step (a
        tail or head value per user, so the scaling is done on (n_users,) vectors)."""
        if self.method == "calibrated":
            tail = -js_divergence(self.target, (self.tail_selected + 1) / (step + 1))
            head = -js_divergence(self.target, self.tail_selected / (step + 1))
        else:
            tail = self.target * (1.0 - self.tail_selected / (step + 1))
            head = (1 - self.target) * (1.0 - (step - self.tail_selected) / (step + 1))
        return np.stack((scale * head, scale * tail), axis=1).ravel().take(self.cell_value)

    def update(self, rows: np.ndarray, pick: np.ndarray, has: np.ndarray) -> None:
        self.tail_selected += np.where(has, self.cand_tail[rows, pick], 0)


class _Redundancy:
    """MMR's state: each candidate's highest cosine to the items already in the list."""

    def __init__(self, items: np.ndarray, vectors: np.ndarray | None):
        if vectors is None:
            raise ValueError("mmr needs item vectors")
        self.cand_vectors = vectors[np.maximum(items, 0)]
        self.max_sim = np.full(items.shape, -1.0)

    def term(self, step: int, scale: float = 1.0) -> np.ndarray:
        return scale * -self.max_sim

    def update(self, rows: np.ndarray, pick: np.ndarray, has: np.ndarray) -> None:
        sims = np.einsum("udk,uk->ud", self.cand_vectors, self.cand_vectors[rows, pick])
        self.max_sim = np.where(has[:, None], np.maximum(self.max_sim, sims), self.max_sim)


def js_divergence(p_tail: np.ndarray, q_tail: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between the {head, tail} distributions with tail shares
    p_tail and q_tail."""
    p = np.stack([1 - p_tail, p_tail], axis=-1)
    q = np.stack([1 - q_tail, q_tail], axis=-1)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> np.ndarray:
        return np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)), 0.0).sum(axis=-1)

    return 0.5 * kl(p) + 0.5 * kl(q)


def _greedy(items, scores, k, tail_weight, method, is_tail, appetite, vectors, exposure_cost, path):
    """`greedy_positions` and, in population mode (exposure cost without a path), the exposure path."""
    if method not in RERANK_METHODS:
        raise ValueError(f"rerank.method must be one of {', '.join(RERANK_METHODS)}, got {method!r}")
    n_users, depth = items.shape
    valid = items >= 0
    rel = _relevance(items, scores)
    lam = float(np.clip(tail_weight, 0.0, 1.0))
    k = min(k, depth)
    chosen = np.full((n_users, k), -1, dtype=np.int64)
    taken = ~valid
    rows = np.arange(n_users)
    state = _Redundancy(items, vectors) if method == "mmr" else \
        _PopularityAspects(method, items, valid, is_tail, appetite, lam)
    exposed = exposure_cost > 0 and method != "mmr" and lam > 0
    record = exposed and (path is None or not len(path))
    counts = np.zeros(len(is_tail), dtype=np.int64) if record else None
    cells = _CellCosts(items, valid) if exposed else None
    kept_rel = (1 - lam) * rel
    steps = []
    for step in range(k):
        if lam == 0.0:
            objective = rel.copy()
        else:
            objective = state.term(step, lam)
            np.add(kept_rel, objective, out=objective)
        if exposed:
            cost = _shares(counts) if record else path[min(step, len(path) - 1)]
            steps.append(cost)
            objective -= cells(cost, exposure_cost)
        np.putmask(objective, taken, -np.inf)
        pick = np.argmax(objective, axis=1)
        has = ~taken[rows, pick]
        chosen[has, step] = pick[has]
        taken[rows[has], pick[has]] = True
        if lam > 0 or method != "mmr":
            state.update(rows, pick, has)
        if record:
            counts += np.bincount(items[rows[has], pick[has]], minlength=len(counts))
    width = len(is_tail) if is_tail is not None else 0
    if not (record and steps):
        return chosen, np.zeros((0, width), np.float32)
    return chosen, np.stack([*steps, _shares(counts)])


def _shares(counts: np.ndarray) -> np.ndarray:
    """Exposure costs: each item's count over the most exposed item's (float32, as stored and replayed)."""
    return (counts / max(int(counts.max()), 1)).astype(np.float32)


class _CellCosts:
    """(n_users, depth) `scale` x the cost of each candidate cell under an item cost vector; padding and items
    past the vector (added at serving time) cost 0. The cells' item lookups are fixed over a greedy pass, so they
    are built once per cost-vector width (padding and unknown items look up a 0 appended to the vector)."""

    def __init__(self, items: np.ndarray, valid: np.ndarray):
        self.items, self.valid, self.width, self.lookup = items, valid, -1, None

    def __call__(self, cost: np.ndarray, scale: float) -> np.ndarray:
        if len(cost) != self.width:
            self.width = len(cost)
            self.lookup = np.where(self.valid & (self.items < len(cost)), self.items, len(cost))
        return np.append(scale * cost.astype(np.float64), 0.0)[self.lookup]

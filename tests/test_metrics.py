"""Offline metrics: hand-computed cases plus equality with a plain per-user reference (no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse

from ray_longtail.metrics import USER_METRICS, candidate_recall, ranking_metrics, user_accuracy


def _truth(sets: list[set[int]], n_items: int) -> scipy.sparse.csr_matrix:
    rows = [u for u, s in enumerate(sets) for _ in s]
    cols = [i for s in sets for i in sorted(s)]
    return scipy.sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(sets), n_items))


def _rec(lists: list[list[int]], width: int | None = None) -> np.ndarray:
    width = width or max(len(r) for r in lists)
    out = np.full((len(lists), width), -1, dtype=np.int64)
    for u, r in enumerate(lists):
        out[u, : len(r)] = r
    return out


def _run(lists, sets, n_items, ks, pop=None, tail=(), cold=(), n_hist_users=10, width=None):
    pop = np.zeros(n_items, dtype=np.int64) if pop is None else np.asarray(pop)
    is_tail = np.isin(np.arange(n_items), list(tail))
    is_cold = np.isin(np.arange(n_items), list(cold))
    return ranking_metrics(_rec(lists, width), _truth(sets, n_items), pop, is_tail, is_cold, n_hist_users, ks)


def inv_log(r: int) -> float:
    """Discount of rank r (from 1): 1/log2(r+1)."""
    return 1.0 / math.log2(r + 1)


# --------------------------------------------------------------------------------------------- hand-computed cases


def test_recall_hit_ndcg_with_ranks():
    # u0: list [0,1,2,3], G={1,3,5}: hits at ranks 2 and 4.
    #   @2: R={0,1}: recall 1/3, hit 1, dcg 1/log2(3), ideal (min(3,2)=2) 1 + 1/log2(3)
    #   @4: recall 2/3, dcg 1/log2(3) + 1/log2(5), ideal (min(3,4)=3) 1 + 1/log2(3) + 1/log2(4)
    # u1: list [2,0], G={4}: no hit: recall 0, hit 0, ndcg 0
    # u2: list [4], G={4}: hit at rank 1: recall 1, hit 1, ndcg 1
    m = _run([[0, 1, 2, 3], [2, 0], [4]], [{1, 3, 5}, {4}, {4}], n_items=6, ks=(2, 4))
    assert m["users"] == 3
    assert m["recall@2"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert m["hit@2"] == pytest.approx(2 / 3)
    ndcg0_2 = inv_log(2) / (inv_log(1) + inv_log(2))
    assert m["ndcg@2"] == pytest.approx((ndcg0_2 + 0 + 1) / 3)
    assert m["recall@4"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert m["hit@4"] == pytest.approx(2 / 3)
    ndcg0_4 = (inv_log(2) + inv_log(4)) / (inv_log(1) + inv_log(2) + inv_log(3))
    assert m["ndcg@4"] == pytest.approx((ndcg0_4 + 0 + 1) / 3)


def test_empty_ground_truth_user_is_ignored():
    # u1 has no ground truth: it must not change any metric, including coverage / Gini / novelty / APLT, even though
    # its list holds items nobody else gets.
    lists = [[0, 1, 2], [5, 6, 7], [3, 1]]
    sets = [{1, 4}, set(), {3}]
    kw = dict(n_items=8, ks=(2, 3), pop=[5, 4, 3, 2, 1, 0, 0, 0], tail=(3, 4, 5, 6, 7), cold=(5, 6, 7))
    with_empty = _run(lists, sets, **kw)
    without = _run([lists[0], lists[2]], [sets[0], sets[2]], **kw)
    assert with_empty["users"] == 2
    assert with_empty == pytest.approx(without)
    # coverage@2 only sees {0,1} ∪ {3,1} = {0,1,3} -> 3/8
    assert with_empty["coverage@2"] == pytest.approx(3 / 8)


def test_k_larger_than_list_with_padding():
    # u0: list [1] padded with -1 to width 2, G={1,2}, K=5:
    #   recall 1/2, hit 1, ndcg = 1/log2(2) / (1/log2(2) + 1/log2(3))  (ideal uses min(|G|,K)=2, not the list length)
    #   tail={1}: APLT = 1/5 (divide by K, not by the list length 1); padding is not an item (coverage 1/4)
    m = _run([[1]], [{1, 2}], n_items=4, ks=(5,), tail=(1,), width=2)
    assert m["recall@5"] == pytest.approx(0.5)
    assert m["hit@5"] == 1.0
    assert m["ndcg@5"] == pytest.approx(1.0 / (1.0 + inv_log(2)))
    assert m["aplt@5"] == pytest.approx(1 / 5)
    assert m["coverage@5"] == pytest.approx(1 / 4)


def test_list_longer_than_k():
    # list [0,1,2,3,4], G={3}, K=2: R={0,1}: no hit -> recall 0, hit 0, ndcg 0; coverage {0,1} -> 2/10
    # K=4: hit at rank 4 -> recall 1, ndcg (1/log2 5) / 1
    m = _run([[0, 1, 2, 3, 4]], [{3}], n_items=10, ks=(2, 4))
    assert (m["recall@2"], m["hit@2"], m["ndcg@2"]) == (0.0, 0.0, 0.0)
    assert m["coverage@2"] == pytest.approx(0.2)
    assert m["recall@4"] == 1.0
    assert m["ndcg@4"] == pytest.approx(inv_log(4))
    assert m["coverage@4"] == pytest.approx(0.4)


def test_gini_equal_exposure_is_zero():
    # n=4, u0 [0,1], u1 [2,3], K=2: x = [1,1,1,1]; Σ(2i-5) x_i = (-3-1+1+3)·1 = 0 -> Gini 0
    m = _run([[0, 1], [2, 3]], [{0}, {2}], n_items=4, ks=(2,))
    assert m["gini@2"] == pytest.approx(0.0, abs=1e-12)


def test_gini_one_item_exposure():
    # n=4, both users get only item 0: x sorted = [0,0,0,2]; Σ = (2·4-5)·2 = 6; / (4·2) = 3/4 = (n-1)/n
    m = _run([[0], [0]], [{1}, {2}], n_items=4, ks=(3,), width=3)
    assert m["gini@3"] == pytest.approx(3 / 4)


def test_gini_with_ties_in_exposure():
    # n=4, u0 [0,1], u1 [0,2], K=2: x = [2,1,1,0] -> sorted [0,1,1,2] (the tied 1s may come in any order):
    # Σ(2i-5)x_i = -3·0 - 1·1 + 1·1 + 3·2 = 6; Σx = 4 -> 6 / (4·4) = 0.375
    m = _run([[0, 1], [0, 2]], [{3}, {3}], n_items=4, ks=(2,))
    assert m["gini@2"] == pytest.approx(0.375)


def test_gini_no_exposure_is_zero():
    # every list is empty (all padding): Σx = 0 -> Gini 0, coverage 0, novelty 0, APLT 0
    m = _run([[], []], [{0}, {1}], n_items=3, ks=(2,), width=2, tail=(1, 2))
    assert (m["gini@2"], m["coverage@2"], m["novelty@2"], m["aplt@2"]) == (0.0, 0.0, 0.0, 0.0)


def test_aplt_divides_by_k():
    # tail = {2,3}. u0 [2] (width 3), u1 [0,3,2].
    #   @3: u0 1/3 (one tail item over K=3, not over the list length 1), u1 2/3 -> mean 1/2
    #   @1: u0 1/1, u1 0/1 -> mean 1/2;  @2: u0 1/2, u1 1/2 -> 1/2
    m = _run([[2], [0, 3, 2]], [{0}, {1}], n_items=4, ks=(1, 2, 3), tail=(2, 3), width=3)
    assert m["aplt@3"] == pytest.approx(0.5)
    assert m["aplt@1"] == pytest.approx(0.5)
    assert m["aplt@2"] == pytest.approx(0.5)


def test_novelty_formula():
    # pop = [9,3,0,1], n_hist_users = 15. Pairs in top-2: (u0,0), (u0,2), (u1,1)
    #   item 0: -log2(10/16) = log2(1.6); item 2: -log2(1/16) = 4; item 1: -log2(4/16) = 2
    #   mean over the 3 pairs (not per user): (log2(1.6) + 4 + 2) / 3
    m = _run([[0, 2, 3], [1]], [{3}, {3}], n_items=4, ks=(2,), pop=[9, 3, 0, 1], n_hist_users=15, width=3)
    assert m["novelty@2"] == pytest.approx((math.log2(1.6) + 4 + 2) / 3)


def test_tail_and_cold_recall_only_over_users_with_tail_or_cold_truth():
    # tail = {3,4,5}, cold = {5}
    # u0: G={0,1} (no tail), list [0]    -> not a tail/cold user
    # u1: G={3,5}, list [3,0]            -> G_tail={3,5}: 1/2; G_cold={5}: 0/1
    # u2: G={4,1}, list [4]              -> G_tail={4}: 1/1; no cold
    # tail_recall@2 = (1/2 + 1)/2 = 0.75 over 2 users; cold_recall@2 = 0 over 1 user
    m = _run([[0], [3, 0], [4]], [{0, 1}, {3, 5}, {4, 1}], n_items=6, ks=(2,), tail=(3, 4, 5), cold=(5,))
    assert (m["users"], m["tail_users"], m["cold_users"]) == (3, 2, 1)
    assert m["tail_recall@2"] == pytest.approx(0.75)
    assert m["cold_recall@2"] == 0.0
    # u1 now also recommends the cold item 5 at rank 2: cold recall 1/1, tail recall (2/2 + 1)/2 = 1
    m = _run([[0], [3, 5], [4]], [{0, 1}, {3, 5}, {4, 1}], n_items=6, ks=(2,), tail=(3, 4, 5), cold=(5,))
    assert m["cold_recall@2"] == 1.0
    assert m["tail_recall@2"] == 1.0


def test_cold_recall_zero_when_no_user_has_cold_truth():
    m = _run([[0, 1]], [{1}], n_items=3, ks=(2,), tail=(1, 2), cold=(2,))
    assert m["cold_users"] == 0
    assert m["cold_recall@2"] == 0.0
    assert m["tail_users"] == 1
    assert m["tail_recall@2"] == 1.0


def test_coverage():
    # n=10, u0 [0,1,2], u1 [2,3,4]: @2 ∪ = {0,1,2,3} -> 0.4; @3 ∪ = {0,...,4} -> 0.5
    m = _run([[0, 1, 2], [2, 3, 4]], [{9}, {9}], n_items=10, ks=(2, 3))
    assert m["coverage@2"] == pytest.approx(0.4)
    assert m["coverage@3"] == pytest.approx(0.5)


def test_rejects_duplicates_and_bad_indices():
    with pytest.raises(ValueError, match="more than once"):
        _run([[1, 2, 1]], [{1}], n_items=4, ks=(3,))
    with pytest.raises(ValueError, match="item indices"):
        _run([[1, 4]], [{1}], n_items=4, ks=(2,))


# ------------------------------------------------------------------------------ per-user reference on random data


def _reference(rec, truth, pop, is_tail, is_cold, n_hist_users, ks):
    """Straight from the definitions, one user at a time."""
    n_users, n = truth.shape
    G_all = [set(truth[u].indices.tolist()) for u in range(n_users)]
    users = [u for u in range(n_users) if G_all[u]]
    out = {"users": len(users)}
    out["tail_users"] = sum(1 for u in users if any(is_tail[i] for i in G_all[u]))
    out["cold_users"] = sum(1 for u in users if any(is_cold[i] for i in G_all[u]))
    for K in ks:
        rec_k, ndcg, hit, tails, colds, aplt, pairs = [], [], [], [], [], [], []
        exposure = [0] * n
        for u in users:
            G = G_all[u]
            R = [int(i) for i in rec[u][:K] if i >= 0]
            rec_k.append(len(set(R) & G) / len(G))
            hit.append(1.0 if set(R) & G else 0.0)
            dcg = sum(1 / math.log2(r + 1) for r, i in enumerate(R, start=1) if i in G)
            ideal = sum(1 / math.log2(r + 1) for r in range(1, min(len(G), K) + 1))
            ndcg.append(dcg / ideal)
            G_tail = {i for i in G if is_tail[i]}
            if G_tail:
                tails.append(len(set(R) & G_tail) / len(G_tail))
            G_cold = {i for i in G if is_cold[i]}
            if G_cold:
                colds.append(len(set(R) & G_cold) / len(G_cold))
            aplt.append(sum(1 for i in R if is_tail[i]) / K)
            for i in R:
                exposure[i] += 1
                pairs.append(-math.log2((pop[i] + 1) / (n_hist_users + 1)))
        x = sorted(exposure)
        gini = sum((2 * i - n - 1) * x[i - 1] for i in range(1, n + 1)) / (n * sum(x)) if sum(x) else 0.0
        out[f"recall@{K}"] = sum(rec_k) / len(users)
        out[f"ndcg@{K}"] = sum(ndcg) / len(users)
        out[f"hit@{K}"] = sum(hit) / len(users)
        out[f"tail_recall@{K}"] = sum(tails) / len(tails) if tails else 0.0
        out[f"cold_recall@{K}"] = sum(colds) / len(colds) if colds else 0.0
        out[f"coverage@{K}"] = sum(1 for e in exposure if e) / n
        out[f"aplt@{K}"] = sum(aplt) / len(users)
        out[f"gini@{K}"] = gini
        out[f"novelty@{K}"] = sum(pairs) / len(pairs) if pairs else 0.0
    return out


def _random_case(seed: int = 0, n_users: int = 200, n_items: int = 300, width: int = 25):
    rng = np.random.default_rng(seed)
    rec = np.full((n_users, width), -1, dtype=np.int64)
    lengths = rng.integers(0, width + 1, size=n_users)
    # skew towards low item ids so that hits, ties and shared exposure happen
    p = 1.0 / np.arange(1, n_items + 1)
    p /= p.sum()
    for u in range(n_users):
        rec[u, : lengths[u]] = rng.choice(n_items, size=lengths[u], replace=False, p=p)
    sizes = rng.integers(0, 8, size=n_users)  # some users get an empty ground truth
    rows = np.repeat(np.arange(n_users), sizes)
    cols = np.concatenate([rng.choice(n_items, size=s, replace=False, p=p) for s in sizes])
    truth = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_users, n_items))
    pop = rng.integers(0, 50, size=n_items)
    pop[rng.random(n_items) < 0.2] = 0
    order = np.lexsort((np.arange(n_items), -pop))
    is_tail = np.ones(n_items, dtype=bool)
    is_tail[order[: math.ceil(0.2 * n_items)]] = False
    is_cold = pop == 0
    return rec, truth, pop, is_tail, is_cold


def test_vectorised_equals_reference_on_random_case():
    rec, truth, pop, is_tail, is_cold = _random_case()
    ks = (1, 5, 10, 20, 40)  # 40 > list width 25
    got = ranking_metrics(rec, truth, pop, is_tail, is_cold, 500, ks)
    want = _reference(rec, truth, pop, is_tail, is_cold, 500, ks)
    assert set(got) == set(want)
    assert 0 < got["users"] < 200 and got["tail_users"] > 0 and got["cold_users"] > 0
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert isinstance(got["users"], int) and all(isinstance(v, (int, float)) for v in got.values())


# --------------------------------------------------------------------------------------------- candidate_recall


def test_candidate_recall_hand_case():
    # n=5, tail = {3,4}
    # u0: G={0,3}; candidates (0,0) twice, (0,1), (0,4) -> distinct {0,1,4}: |C∩G|=1 -> 1/2; G_tail={3}: 0/1
    # u1: G={1,4}; candidates (1,4), (1,2)            -> distinct {2,4}:   |C∩G|=1 -> 1/2; G_tail={4}: 1/1
    # u2: G={} (ignored, even though it has candidates (2,0), (2,1))
    # recall = (1/2 + 1/2)/2 = 0.5; tail_recall = (0 + 1)/2 = 0.5; candidates_per_user = (3 + 2)/2 = 2.5
    users = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    items = np.array([0, 0, 1, 4, 4, 2, 0, 1])
    is_tail = np.isin(np.arange(5), [3, 4])
    out = candidate_recall(users, items, _truth([{0, 3}, {1, 4}, set()], 5), is_tail)
    assert out == pytest.approx({"recall": 0.5, "tail_recall": 0.5, "candidates_per_user": 2.5})


def test_candidate_recall_equals_reference_on_random_case():
    rec, truth, _, is_tail, _ = _random_case(seed=1)
    users, cols = np.nonzero(rec >= 0)
    items = rec[users, cols]
    users, items = np.concatenate([users, users[::3]]), np.concatenate([items, items[::3]])  # duplicates
    got = candidate_recall(users, items, truth, is_tail)
    C = [set() for _ in range(truth.shape[0])]
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        C[u].add(i)
    G = [set(truth[u].indices.tolist()) for u in range(truth.shape[0])]
    ev = [u for u in range(len(G)) if G[u]]
    tail_ev = [u for u in ev if any(is_tail[i] for i in G[u])]
    want = {
        "recall": sum(len(C[u] & G[u]) / len(G[u]) for u in ev) / len(ev),
        "tail_recall": sum(
            len({i for i in C[u] & G[u] if is_tail[i]}) / len({i for i in G[u] if is_tail[i]}) for u in tail_ev
        )
        / len(tail_ev),
        "candidates_per_user": sum(len(C[u]) for u in ev) / len(ev),
    }
    assert got == pytest.approx(want, rel=1e-9)


def test_per_user_values_average_to_the_reported_metric_on_the_evaluated_users():
    rec, truth, pop, is_tail, is_cold = _random_case(seed=3)
    ks = (1, 5, 10, 20, 40)  # 40 > list width 25
    reported = ranking_metrics(rec, truth, pop, is_tail, is_cold, 500, ks)
    for k in ks:
        for name in USER_METRICS:
            values = user_accuracy(rec, truth, name, k)
            assert values.shape == (reported["users"],)
            assert values.mean() == reported[f"{name}@{k}"], (name, k)  # the same sums, bit for bit
    with pytest.raises(ValueError, match="coverage"):
        user_accuracy(rec, truth, "coverage", 10)  # a catalog-level metric has no per-user value
    with pytest.raises(ValueError, match="rows"):
        user_accuracy(rec[:-1], truth, "ndcg", 10)  # misaligned users would pair the wrong people

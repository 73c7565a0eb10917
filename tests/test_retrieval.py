"""Segments, profiles and every candidate source on hand-made matrices and a real slice (no Ray)."""

import math

import numpy as np
import pandas as pd
import pytest

from ray_longtail.config import RetrieveConfig
from ray_longtail.data import schema as S
from ray_longtail.data.ingest import bundled_paths
from ray_longtail.discover import cluster_items, segment_items
from ray_longtail.embed import TextEncoder, item_texts
from ray_longtail.history import DAY, History, SourceContext
from ray_longtail.profile import recency_weights, user_profiles
from ray_longtail.retrieve import candidate_union
from ray_longtail.scoring import BlendScorer, wide_candidates
from ray_longtail.sources.base import known_users_batch, make_batch, mask_seen, top_n
from ray_longtail.sources.collaborative import EASE, ItemKNN, MostPopular
from ray_longtail.sources.registry import REGISTRY, make_sources


def batch_of(history, users):
    """A batch of history users for sources that read only the history rows."""
    users = np.asarray(users)
    return make_batch(history, users, np.zeros((len(users), 1), np.float32), np.zeros((history.n_items, 1)), users,
                      with_content=False)


def events(pairs, ts=1000):
    return pd.DataFrame({S.USER_ID: [u for u, _ in pairs], S.ITEM_ID: [i for _, i in pairs],
                         S.TIMESTAMP: [ts] * len(pairs)})


def test_segments_head_size_ties_and_cold():
    ids = np.array(["b", "a", "d", "c", "e", "f", "g", "h", "i", "j", "k"])
    pop = np.array([5, 5, 3, 3, 3, 1, 0, 0, 2, 0, 1])
    seg = segment_items(ids, pop, 0.2).set_index(S.ITEM_ID)[S.SEGMENT]
    assert (seg == S.HEAD).sum() == math.ceil(0.2 * 11) == 3
    assert list(seg[seg == S.HEAD].index) == ["b", "a", "c"]  # ties at 3 broken by item_id: c < d < e
    assert set(seg[seg == S.COLD].index) == {"g", "h", "j"}
    assert seg[pop == 0].isin([S.COLD]).all() and not seg[seg == S.COLD].index.isin(["b", "a", "c"]).any()


def test_itemknn_hand_computed_order():
    # users x items:  u1: A B   u2: A B C   u3: C D   u4: A      (A: 3 users, B: 2, C: 2, D: 1)
    # cos(A,B) = 2/sqrt(3*2) = .816, cos(A,C) = 1/sqrt(3*2) = .408, cos(B,C) = 1/2, cos(C,D) = 1/sqrt(2*1) = .707
    history = History.build(events([("u1", "A"), ("u1", "B"), ("u2", "A"), ("u2", "B"), ("u2", "C"),
                                    ("u3", "C"), ("u3", "D"), ("u4", "A")]), np.array(["A", "B", "C", "D"]), 2000)
    knn = ItemKNN(neighbors=10).fit(history)
    np.testing.assert_allclose(knn.similarity_.toarray()[2], [1 / math.sqrt(6), 0.5, 0, 1 / math.sqrt(2)], rtol=1e-6)
    u4 = history.user_index(["u4"])
    items, scores = knn.candidates(batch_of(history, u4), 3)
    # u4 has A: B (.816) > C (.408); D never co-occurs with A -> not proposed
    assert items[0].tolist() == [1, 2, -1]
    np.testing.assert_allclose(scores[0, :2], [2 / math.sqrt(6), 1 / math.sqrt(6)], rtol=1e-6)


def test_ease_matches_closed_form():
    rng = np.random.default_rng(0)
    pairs = [(f"u{u}", f"i{i}") for u in range(30) for i in range(8) if rng.random() < 0.4]
    history = History.build(events(pairs), np.array([f"i{i}" for i in range(8)]), 2000)
    ease = EASE(l2=2.0).fit(history)
    X = history.binary.toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + 2.0 * np.eye(8))
    B = np.eye(8) - P / np.diag(P)
    np.fill_diagonal(B, 0)
    np.testing.assert_allclose(ease.score(batch_of(history, np.arange(5))), X[:5] @ B, rtol=1e-4, atol=1e-5)


def test_ease_rejects_a_ridge_that_is_not_positive():
    from ray_longtail.errors import ConfigError

    history = History.build(events([("u1", "A"), ("u2", "B")]), np.array(["A", "B"]), 2000)
    with pytest.raises(ConfigError, match="ease_lambda"):
        EASE(l2=0.0).fit(history)


def test_spd_inverse_in_place_equals_numpy():
    from ray_longtail.sources.collaborative import spd_inverse

    X = (np.random.default_rng(1).random((60, 25)) < 0.2).astype(np.float64)
    gram = X.T @ X
    expected = np.linalg.inv(gram + 3.0 * np.eye(25))
    work = gram.copy()
    inverse = spd_inverse(work, 3.0, block=7)  # blocks that do not divide the size
    assert np.shares_memory(inverse, work)
    np.testing.assert_allclose(inverse, expected, rtol=1e-10, atol=1e-12)


def test_top_n_ties_padding_and_minus_inf():
    scores = np.array([[1.0, 3.0, 3.0, -np.inf], [-np.inf, -np.inf, 0.5, -np.inf]], dtype=np.float32)
    items, values = top_n(scores, 3)
    assert items.tolist() == [[1, 2, 0], [2, -1, -1]]
    assert values[0].tolist() == [3.0, 3.0, 1.0]
    tied = np.array([[1.0, 2.0, 5.0, 2.0, 2.0, 2.0]] * 3, dtype=np.float32)
    assert top_n(tied, 3)[0].tolist() == [[2, 1, 3]] * 3  # the tie at the n-th place goes to the lower index


def test_recency_weights_half_life_and_max_history():
    frame = pd.DataFrame({S.USER_ID: ["u"] * 3, S.ITEM_ID: ["a", "b", "c"],
                          S.TIMESTAMP: [int(100 * DAY - 10 * DAY), int(100 * DAY - 20 * DAY), int(100 * DAY - 1)]})
    history = History.build(frame, np.array(["a", "b", "c"]), int(100 * DAY))
    weights = recency_weights(history, half_life_days=10, max_history=2).toarray()[0]
    np.testing.assert_allclose(weights, [0.5, 0.0, 0.5 ** (1 / 864000)], rtol=1e-5)


@pytest.fixture(scope="module")
def real_slice():
    """600 real items, the interactions of their users, real MiniLM embeddings."""
    items = pd.read_parquet(bundled_paths()[0])
    items = items[items["is_standard_stockcode"] & (items[S.TITLE] != "")].head(600).reset_index(drop=True)
    events_ = pd.read_parquet(bundled_paths()[1])
    events_ = events_[events_[S.ITEM_ID].isin(items[S.ITEM_ID])]
    end = int(events_[S.TIMESTAMP].quantile(0.8))
    history = History.build(events_[events_[S.TIMESTAMP] < end], items[S.ITEM_ID].to_numpy(), end)
    vectors = TextEncoder("sentence-transformers/all-MiniLM-L6-v2").encode(item_texts(items, ["title"]))
    segments = segment_items(history.item_ids, history.popularity())
    labels, _ = cluster_items(vectors, 12)
    context = SourceContext(vectors=vectors, clusters=labels, is_tail=(segments[S.SEGMENT] != S.HEAD).to_numpy(),
                            profiles=user_profiles(history, vectors))
    return history, context


def test_every_source_respects_n_and_never_returns_history_items(real_slice):
    history, context = real_slice
    users = np.arange(0, history.n_users, 3)
    sources = [s.fit(history, context) for s in make_sources(RetrieveConfig(als_iterations=3), REGISTRY)]
    long = candidate_union(sources, history, context, users, n=20, batch_size=64)
    assert set(long["source"]) == {"content", "itemknn", "ease", "als", "popular", "tail_explore"}
    per_user = long.groupby(["source", "user"]).size()
    assert per_user.max() <= 20
    seen = set(zip(*history.binary.nonzero(), strict=True))
    assert not any((u, i) in seen for u, i in zip(long["user"], long["item"], strict=True))
    assert not long.duplicated(["source", "user", "item"]).any()
    tail = long[long["source"] == "tail_explore"]
    assert context.is_tail[tail["item"].to_numpy()].all()
    popular = long[long["source"] == "popular"]
    pop = history.popularity()
    np.testing.assert_allclose(popular["score"], np.log1p(pop[popular["item"]]), rtol=1e-6)
    assert (popular.groupby("user")["score"].diff().dropna() <= 0).all()
    wide = wide_candidates(long, ["content", "ease"], 20)
    assert (wide["rank_content"] <= 21).all() and wide[["user", "item"]].duplicated().sum() == 0
    blend = BlendScorer(["content", "ease"]).score(wide)
    both = wide["score_content"].notna() & wide["score_ease"].notna()
    assert (blend[both] > blend[~both].max() - 1 / 61).all() or not both.any()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_source_meets_the_source_contract(real_slice, name):
    """fit returns self; candidates have the documented shapes and order, respect exclude_seen, are deterministic,
    and a source's fast path (sparse or restricted scores) returns exactly the dense top-n."""
    history, context = real_slice
    users = np.arange(0, history.n_users, 2)
    (source,) = make_sources(RetrieveConfig(als_iterations=3, ease_max_items=300), [name])
    assert source.fit(history, context) is source
    batch = known_users_batch(history, context, users)
    for exclude_seen in (True, False):
        items, scores = source.candidates(batch, 25, exclude_seen=exclude_seen)
        assert items.shape == scores.shape == (len(users), 25) and items.dtype == np.int64
        assert (items >= 0).sum() > 0
        assert (np.diff(np.where(items >= 0, scores, np.finfo(np.float32).min), axis=1) <= 0).all()  # best first
        seen = history.binary[users].toarray().astype(bool)
        hits = np.take_along_axis(seen, np.maximum(items, 0), axis=1) & (items >= 0)
        if exclude_seen:
            assert not hits.any(), name
        dense = top_n(mask_seen(np.array(source.score(batch), np.float32), batch.rows, exclude_seen), 25)
        np.testing.assert_array_equal(items, dense[0], err_msg=name)
        np.testing.assert_allclose(scores, dense[1], rtol=1e-6, err_msg=name)
        again = source.candidates(known_users_batch(history, context, users), 25, exclude_seen=exclude_seen)
        np.testing.assert_array_equal(again[0], items)


def test_als_scores_unseen_rows_like_fitted_users_and_loads_older_pickles(real_slice):
    """A history row the sources never saw scores exactly as the same row fitted; a pickle from before
    `item_gram_` was learned state (runs of earlier versions) gets it back on load and scores the same."""
    import copy
    import pickle

    history, context = real_slice
    (als,) = make_sources(RetrieveConfig(als_iterations=3), ["als"])
    als.fit(history, context)
    users = np.arange(0, history.n_users, 5)
    known = known_users_batch(history, context, users)
    unseen = make_batch(history, users, context.profiles[users], context.vectors)
    np.testing.assert_allclose(als.score(unseen), als.score(known), atol=1e-5)
    as_pickled_before = copy.copy(als)
    del as_pickled_before.item_gram_
    older = pickle.loads(pickle.dumps(as_pickled_before))
    np.testing.assert_array_equal(older.item_gram_, als.item_gram_)
    np.testing.assert_array_equal(older.score(unseen), als.score(unseen))


def test_most_popular_orders_by_distinct_users(real_slice):
    history, context = real_slice
    popular = MostPopular().fit(history, context)
    items, _ = popular.candidates(batch_of(history, [0]), 5, exclude_seen=False)
    pop = history.popularity()
    assert (np.diff(pop[items[0]]) <= 0).all() and pop[items[0][0]] == pop.max()


def test_batches_shrink_on_large_catalogs():
    from ray_longtail.retrieve import MAX_BATCH_CELLS, effective_batch_size

    assert effective_batch_size(512, 4_000) == 512
    assert effective_batch_size(512, 1_000_000) * 1_000_000 <= MAX_BATCH_CELLS
    assert effective_batch_size(512, 10**9) == 1

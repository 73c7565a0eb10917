"""Serving lists (`precompute.py`): the table round-trips a `RankedCandidates` exactly, users are chosen by recency,
and added items merge into a user's ranked candidates after scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ray_longtail import scoring
from ray_longtail.data import schema as S
from ray_longtail.history import History
from ray_longtail.precompute import ExposurePaths, PrecomputedLists, ranked_table, serving_users

SOURCES = ["content", "itemknn", "ease"]


def small_history() -> History:
    events = pd.DataFrame({S.USER_ID: ["a", "a", "b", "c", "c", "d"], S.ITEM_ID: ["i0", "i1", "i2", "i0", "i3", "i4"],
                           S.TIMESTAMP: [10, 50, 20, 30, 40, 5]})
    return History.build(events, np.array([f"i{i}" for i in range(8)], dtype=object), end_ts=100)


def ranked_for(history: History, users: list[int], scores_dtype=np.float32) -> scoring.RankedCandidates:
    rng = np.random.default_rng(0)
    rows = [(u, i) for u in users for i in rng.choice(8, size=5, replace=False)]
    scored = pd.DataFrame({"user": [u for u, _ in rows], "item": [i for _, i in rows],
                           "score": rng.normal(size=len(rows)).astype(scores_dtype).astype(np.float64),
                           "source": rng.choice(SOURCES, size=len(rows))})
    return scoring.rank_candidates(scored, history, np.arange(8) >= 4, depth=6)


def test_serving_users_are_the_most_recently_active():
    history = small_history()  # last activity: a 50, b 20, c 40, d 5
    assert serving_users(history, 10).tolist() == [0, 1, 2, 3]
    assert serving_users(history, 2).tolist() == sorted(history.user_index(["a", "c"]).tolist())
    assert serving_users(history, 0).tolist() == []
    # the history ends at 100 s: a (50) and c (40) were active within 70 s of it, b (20) and d (5) were not
    assert serving_users(history, 10, active_days=70 / 86400).tolist() == sorted(history.user_index(["a", "c"]))
    assert serving_users(history, 1, active_days=70 / 86400).tolist() == history.user_index(["a"]).tolist()


def test_table_round_trips_ranked_candidates_exactly(tmp_path):
    history = small_history()
    for dtype in (np.float32, np.float64):  # float32 scores are stored narrow, others as they are
        ranked = ranked_for(history, [0, 2], dtype)
        table = ranked_table(ranked, np.array([0, 1, 2]), history, SOURCES, exclude_seen=True)
        pq.write_table(table, tmp_path / "ranked.parquet")
        stored = pq.read_table(tmp_path / "ranked.parquet")
        assert stored.schema.field("scores").type.value_type == pa.from_numpy_dtype(dtype)
        lists = PrecomputedLists.from_table(stored, history)
        for row, user in enumerate(ranked.users):
            got = lists.get(int(user), exclude_seen=True)
            np.testing.assert_array_equal(got.items, ranked.items[row: row + 1])
            np.testing.assert_array_equal(got.scores, ranked.scores[row: row + 1])
            np.testing.assert_array_equal(got.appetite, ranked.appetite[row: row + 1])
            valid = got.items >= 0
            assert got.sources[valid].tolist() == ranked.sources[row: row + 1][valid].tolist()
            assert (got.sources[~valid] == None).all()  # noqa: E711 - elementwise over an object array
        empty = lists.get(1, exclude_seen=True)  # computed, no candidates: an empty list, not "unknown"
        assert empty is not None and (empty.items == -1).all()
        assert lists.get(3, exclude_seen=True) is None  # not precomputed
        assert lists.get(0, exclude_seen=False) is None  # precomputed for the other exclude_seen only
        per_user = 6 * (4 + np.dtype(dtype).itemsize + 1) + 8  # depth 6: the memory the config comment states
        assert lists.nbytes == 3 * per_user


def test_added_items_merge_after_scoring_at_their_nearest_candidates_score():
    from ray_longtail.serve.items import ItemIndex, merge_added

    history = small_history()
    ranked = ranked_for(history, [0])
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(8, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalog = ItemIndex(ids=history.item_ids, titles=np.array([""] * 8, dtype=object),
                        segments=np.array([S.HEAD] * 4 + [S.TAIL] * 4, dtype=object), vectors=vectors, n_catalog=8)
    second = int(ranked.items[0, 1])
    far = -vectors[second]  # cosine <= 0 to the twin's candidate; unlikely near any other
    added = pd.DataFrame({S.ITEM_ID: ["new-twin", "new-far"], S.TITLE: ["twin", "far"],
                          "vector": [vectors[second], far]})
    items = catalog.with_added(added)
    assert merge_added(ranked, catalog) is ranked  # nothing added: unchanged
    merged = merge_added(ranked, items, min_cosine=0.99)
    valid = merged.items[0] >= 0
    assert merged.items.shape == ranked.items.shape
    assert 8 in merged.items[0] and 9 not in merged.items[0]
    twin_at = int(np.flatnonzero(merged.items[0] == 8)[0])
    assert merged.items[0, twin_at - 1] == second  # tie with its twin: the catalog item first
    assert merged.scores[0, twin_at] == ranked.scores[0, 1] and merged.sources[0, twin_at] == "content"
    assert (np.diff(merged.scores[0, valid]) <= 0).all()
    kept = [i for i in merged.items[0, valid] if i < 8]
    assert kept == [i for i in ranked.items[0] if i >= 0][: len(kept)]  # catalog order unchanged


def test_one_user_history_equals_build():
    """The frame-free one-user History (the ad-hoc serving path) is what `History.build` makes of the events."""
    item_ids = np.array([f"i{i}" for i in range(8)], dtype=object)
    items, ts = np.array([3, 1, 3, 6, 1, 3]), np.array([40, 10, 20, 90, 70, 5])
    events = pd.DataFrame({S.USER_ID: "u", S.ITEM_ID: item_ids[items], S.TIMESTAMP: ts})
    built, one = History.build(events, item_ids, 100), History.one_user("u", items, ts, item_ids, 100)
    for name in ("binary", "counts", "last_ts"):
        np.testing.assert_array_equal(getattr(one, name).toarray(), getattr(built, name).toarray())
        assert getattr(one, name).dtype == getattr(built, name).dtype
    np.testing.assert_array_equal(one.item_first_ts, built.item_first_ts)
    assert one.user_ids.tolist() == built.user_ids.tolist() and one.end_ts == built.end_ts


def test_exposure_paths_round_trip_and_a_weight_between_them_takes_the_nearest():
    paths = ExposurePaths(weights=np.array([0.6, 0.9]), paths=np.random.default_rng(1).random((2, 20, 8), np.float32))
    again = ExposurePaths.from_bytes(paths.to_bytes())
    np.testing.assert_array_equal(again.paths, paths.paths)
    np.testing.assert_array_equal(again.for_weight(0.9), paths.paths[1])
    np.testing.assert_array_equal(again.for_weight(0.65), paths.paths[0])
    assert ExposurePaths(weights=np.zeros(0), paths=np.zeros((0, 20, 8), np.float32)).for_weight(0.9) is None

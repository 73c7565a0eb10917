"""The online loop without a server: A/B variant parsing and sticky assignment, events stores, folding logged
events into the interactions (`run --events`) and refreshing a finished run with them (`refresh`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ray_longtail.errors import UserError
from ray_longtail.serve.events import open_events
from ray_longtail.serve.variants import assign, parse_variants


@pytest.mark.parametrize("raw, message", [
    ([{"name": "a", "share": 1}, {"name": "a", "share": 1}], "unique"),
    ([{"name": "a", "share": 0}], "sum to 0"),
    ([{"name": "a", "share": -1}], ">= 0"),
    ([{"name": "a", "share": 1, "tail_weight": 1.5}], "[0, 1]"),
    ([{"name": "a", "share": 1, "rerank_method": "random"}], "rerank_method"),
    ([{"name": "a", "share": 1, "tailweight": 0.2}], "unknown keys"),
    ([{"share": 1}], "name"),
    (["a"], "mapping"),
])
def test_bad_variants_are_refused_with_the_reason(raw, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_variants(raw)


def test_assignment_is_sticky_and_close_to_the_shares():
    arms = parse_variants([{"name": "a", "share": 1}, {"name": "b", "share": 3}, {"name": "off", "share": 0}])
    assert [v.share for v in arms] == [0.25, 0.75, 0.0]
    users = [f"user-{i}" for i in range(20_000)]
    first = [assign(arms, u, "salt").name for u in users]
    assert first == [assign(arms, u, "salt").name for u in users]  # sticky
    assert "off" not in first and abs(first.count("a") / len(users) - 0.25) < 0.01
    reshuffled = [assign(arms, u, "other salt").name for u in users]
    assert 0.25 < np.mean([x != y for x, y in zip(first, reshuffled, strict=True)]) < 0.5  # 2·0.25·0.75 expected
    assert parse_variants(None)[0].name == "default" and parse_variants(None)[0].share == 1.0


def test_events_store_at_any_folder(tmp_path):
    with pytest.raises(UserError, match="no events store"):
        open_events(str(tmp_path / "missing"))
    log = open_events(str(tmp_path / "store"), create=True)
    name = log.append([{"user_id": "u", "item_id": "i", "event": "click", "ts": 1_600_000_000}])
    assert (tmp_path / "store" / name).exists()
    read = open_events(str(tmp_path / "store")).read()
    assert read[["user_id", "item_id", "event", "timestamp"]].values.tolist() == [["u", "i", "click", 1_600_000_000]]


def test_folded_events_are_the_chosen_types_on_catalog_items(tmp_path):
    from ray_longtail.config import DataConfig
    from ray_longtail.feedback import fold_events

    log = open_events(str(tmp_path / "events"), create=True)
    log.append([{"user_id": "u1", "item_id": "A", "event": "purchase", "ts": 1_600_000_000},
                {"user_id": "u1", "item_id": "A", "event": "impression", "ts": 1_600_000_000},
                {"user_id": "u2", "item_id": "NEW", "event": "purchase", "ts": 1_600_000_100},
                {"user_id": "u2", "item_id": "B", "event": "click", "ts": 1_600_000_200}])
    rows, report = fold_events(log.read(), pd.Index(["A", "B"]), DataConfig(), ["purchase", "click"], log.uri)
    assert rows[["user_id", "item_id", "event"]].values.tolist() == [["u1", "A", "purchase"], ["u2", "B", "click"]]
    assert report["of_types"] == 3 and report["folded"] == 2 and report["drops"]["unknown_item"] == 1


def test_run_with_events_folds_them_into_the_interactions(ray_head, bundled_slice, tmp_path):
    from conftest import cli

    items, interactions = bundled_slice
    catalog = pd.read_parquet(items)["item_id"].astype(str).tolist()
    log = open_events(str(tmp_path / "events"), create=True)
    log.append([{"user_id": f"fb-{i}", "item_id": catalog[i], "event": "purchase", "ts": 1_320_000_000 + i}
                for i in range(5)] + [{"user_id": "fb-0", "item_id": catalog[9], "event": "impression"}])
    done = cli(["ingest", "--items", items, "--interactions", interactions, "--artifacts", str(tmp_path / "a"),
                "--run-id", "fb", "--events", str(tmp_path / "events"), "-q"], ray_head)
    assert done.returncode == 0, done.stderr[-3000:]
    folded = pd.read_parquet(tmp_path / "a" / "fb" / "interactions.parquet")
    mine = folded[folded["user_id"].str.startswith("fb-")]
    assert sorted(mine["item_id"]) == sorted(catalog[:5]) and set(mine["event"]) == {"purchase"}
    report = json.loads((tmp_path / "a" / "fb" / "ingest_report.json").read_text())
    assert report["feedback"]["events"] == 6 and report["feedback"]["folded"] == 5
    assert len(folded) == report["interactions"]["rows_out"] + 5


def test_refresh_serves_the_same_model_over_the_longer_history(pipeline_run, tmp_path):
    """A cold item bought by three users becomes warm; the ranker, embeddings and selection are the base run's;
    the buyers' histories hold the item; the serving lists are recomputed."""
    from ray_longtail.feedback import refresh_run
    from ray_longtail.serve.recommender import Recommender

    _, _, source = pipeline_run
    base = tmp_path / "base"
    shutil.copytree(source, base, ignore=shutil.ignore_patterns("added_items", "events"))
    segments = pd.read_parquet(base / "item_segments.parquet")
    cold = str(segments.loc[segments["segment"] == "cold", "item_id"].iloc[0])
    users = pd.read_parquet(base / "recommendations.parquet")["user_id"].astype(str).unique()[:3].tolist()
    cut = json.loads((base / "split" / "cuts.json").read_text())["cut_test"]
    open_events(str(base)).append([{"user_id": u, "item_id": cold, "event": "purchase", "ts": cut + 60}
                                   for u in users])
    store, summary = refresh_run(str(base), str(base), out=str(tmp_path / "new"))
    assert summary["became_warm"] == 1 and summary["became_warm_examples"] == [cold]
    assert summary["feedback_rows"] == 3 and (tmp_path / "new" / "metrics.json").exists()
    for same in ("ranker/selection.json", "item_embeddings.parquet", "split/test.parquet"):
        assert (tmp_path / "new" / same).read_bytes() == (base / same).read_bytes()
    assert not (tmp_path / "new" / "events").exists()
    new_segments = pd.read_parquet(tmp_path / "new" / "item_segments.parquet").set_index("item_id")
    assert new_segments.loc[cold, "segment"] != "cold" and new_segments.loc[cold, "popularity"] == 3
    recommender = Recommender(store.uri)
    buyer = recommender.user_of[users[0]]
    history = recommender.run.phase.history.binary[buyer].indices
    assert recommender.catalog_items.position_of[cold] in history
    assert recommender.metadata()["precomputed_users"] == recommender.metadata()["users"]
    with pytest.raises(UserError, match="already a run"):
        refresh_run(str(base), str(base), out=str(tmp_path / "new"))

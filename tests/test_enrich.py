"""Catalog enrichment on a synthetic shop with a third of its categories removed: the classifier, which never sees
the category text, beats the majority class in cross-validation and on the removed items; given categories are
never overwritten and the ranker's catalog takes only the confident predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ray_longtail.config import load_config
from ray_longtail.data import schema as S
from ray_longtail.data.synthetic import generate_shop
from ray_longtail.enrich import CONFIDENCE, INFERRED, SOURCE, enrich_categories, feature_catalog


def shop_with_missing_categories(share: float = 0.3) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    items, _ = generate_shop(n_items=800, seed=3)
    truth = items[S.CATEGORY].astype(str).copy()
    removed = np.random.default_rng(0).random(len(items)) < share
    return items.assign(**{S.CATEGORY: np.where(removed, None, truth)}), truth, removed


def test_enrichment_beats_the_majority_class_without_seeing_the_category_text():
    catalog, truth, removed = shop_with_missing_categories()
    config = load_config(overrides=["embed.model=hashing"])
    frame, report = enrich_categories(catalog, np.zeros((len(catalog), 4), np.float32), config)
    cv = report["cv"]
    assert cv["accuracy"] > cv["majority_accuracy"] + 0.2 and cv["macro_f1"] > cv["majority_macro_f1"]
    predicted = frame.loc[removed, INFERRED].to_numpy()
    majority = truth[~removed].value_counts().index[0]
    assert (predicted == truth[removed].to_numpy()).mean() > (truth[removed] == majority).mean() + 0.2
    assert (frame.loc[~removed, SOURCE] == "given").all() and frame.loc[~removed, INFERRED].isna().all()
    sure = frame[SOURCE] == "inferred"
    assert sure.any() and (frame.loc[sure, CONFIDENCE] >= config.discover.enrich_min_confidence).all()
    features = feature_catalog(catalog, frame)
    assert (features.loc[~removed, S.CATEGORY] == catalog.loc[~removed, S.CATEGORY]).all()  # never overwritten
    assert (features.loc[sure.to_numpy(), S.CATEGORY] == frame.loc[sure, INFERRED]).all()
    assert features.loc[removed & ~sure.to_numpy(), S.CATEGORY].isna().all()


def test_nothing_to_predict_costs_nothing():
    catalog, _, _ = shop_with_missing_categories(share=0.0)
    frame, report = enrich_categories(catalog, np.zeros((len(catalog), 4), np.float32), load_config())
    assert report["skipped"] == "nothing to predict" and (frame[SOURCE] == "given").all()
    blank = catalog.assign(**{S.CATEGORY: None})  # the bundled catalog: no category at all
    frame, report = enrich_categories(blank, np.zeros((len(blank), 4), np.float32), load_config())
    assert report["skipped"] == "nothing to predict" and (frame[SOURCE] == "none").all()
    assert feature_catalog(blank, frame) is blank


def test_the_discover_stage_writes_the_enrichment_and_the_features_read_it(ray_head, tmp_path):
    """`ray-longtail discover` on a synthetic shop with missing categories: item_segments.parquet marks the
    inferred ones, enrichment.json has the cross-validation, and the run's feature catalog takes them."""
    from conftest import cli

    from ray_longtail.artifacts import open_run_store
    from ray_longtail.pipeline import RunContext

    items, events = generate_shop(n_items=500, seed=5)
    truth = items[S.CATEGORY].astype(str)
    removed = np.random.default_rng(1).random(len(items)) < 0.3
    items.assign(**{S.CATEGORY: np.where(removed, None, truth)}).to_parquet(tmp_path / "items.parquet")
    events.to_parquet(tmp_path / "interactions.parquet")
    done = cli(["discover", "--items", str(tmp_path / "items.parquet"), "--interactions",
                str(tmp_path / "interactions.parquet"), "--artifacts", str(tmp_path / "a"), "--run-id", "e",
                "--set", "embed.model=hashing", "-q"], ray_head, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    store = open_run_store(str(tmp_path / "a" / "e"))
    segments = store.read_table("item_segments.parquet")
    report = store.read_json("enrichment.json")
    assert report["cv"]["accuracy"] > report["cv"]["majority_accuracy"] and report["inferred"] > 0
    catalog = store.read_table("catalog.parquet")
    order = pd.Index(items[S.ITEM_ID].astype(str)).get_indexer(catalog[S.ITEM_ID])
    assert (segments.loc[~removed[order], SOURCE] == "given").all()
    config = load_config(extra=store.manifest()["config"])
    features = RunContext(config, store).feature_catalog()
    inferred = (segments[SOURCE] == "inferred").to_numpy()
    assert (features.loc[inferred, S.CATEGORY] == segments.loc[inferred, INFERRED]).all()


def test_enrich_command_writes_a_catalogs_categories(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    catalog, _, removed = shop_with_missing_categories()
    catalog.to_parquet(tmp_path / "items.parquet")
    cli = str(Path(sys.executable).with_name("ray-longtail"))
    done = subprocess.run([cli, "enrich", "--items", str(tmp_path / "items.parquet"), "--out",
                           str(tmp_path / "out.parquet"), "--set", "embed.model=hashing", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    written = pd.read_parquet(tmp_path / "out.parquet")
    assert len(written) == len(catalog) and report["inferred"] == int((written[SOURCE] == "inferred").sum())
    assert set(written[SOURCE]) == {"given", "inferred", "none"} and int(removed.sum()) == report["empty"]

import json

import numpy as np
import pandas as pd
import pytest

from ray_longtail.config import DataConfig, PrivacyConfig
from ray_longtail.data import schema as S
from ray_longtail.data.ingest import bundled_paths, ingest, normalise_text
from ray_longtail.errors import DataError


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """600 real items and their real interactions (first 20k rows of the bundled file)."""
    items_path, events_path = bundled_paths()
    events = pd.read_parquet(events_path).head(20000)
    items = pd.read_parquet(items_path)
    items = items[items["item_id"].isin(events["item_id"]) | ~items["is_standard_stockcode"]]
    return items.reset_index(drop=True), events.reset_index(drop=True), tmp_path_factory.mktemp("ingest")


def write(df, path):
    path = str(path)
    if path.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path)
    return path


def run(items, events, tmp, config=None, suffix="parquet"):
    return ingest(write(items, tmp / f"items.{suffix}"), write(events, tmp / f"events.{suffix}"),
                  config or DataConfig())


def test_report_counts_add_up_and_bundled_quirks_are_cleaned(small):
    items, events, tmp = small
    catalog, clean, report = run(items, events, tmp)
    for part in ("items", "interactions"):
        r = report[part]
        assert r["rows_in"] == r["rows_out"] + sum(r["drops"].values())
    assert report["interactions"]["drops"]["exact_duplicate"] == int(events.duplicated().sum())
    assert report["items"]["drops"]["non_product"] == int((~items["is_standard_stockcode"]).sum())
    assert clean[S.ITEM_ID].isin(catalog[S.ITEM_ID]).all()
    assert clean[S.TIMESTAMP].dtype == np.int64 and clean[S.TIMESTAMP].is_monotonic_increasing
    json.dumps(report)


def test_csv_and_parquet_ingest_to_equal_tables(small):
    items, events, tmp = small
    cat_p, ev_p, _ = run(items, events, tmp)
    cat_c, ev_c, _ = run(items, events, tmp, suffix="csv")
    columns = [S.ITEM_ID, S.TITLE, S.DESCRIPTION, S.CATEGORY, S.BRAND]
    pd.testing.assert_frame_equal(cat_p[columns], cat_c[columns], check_dtype=False)
    np.testing.assert_allclose(cat_p[S.PRICE], cat_c[S.PRICE])
    columns = [S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.EVENT]
    pd.testing.assert_frame_equal(ev_p[columns], ev_c[columns], check_dtype=False)
    np.testing.assert_allclose(ev_p[S.VALUE], ev_c[S.VALUE])


def test_cleaning_rules(small, tmp_path):
    items, events, _ = small
    items = items.head(50).copy()
    items.loc[items.index[0], S.TITLE] = "<b>RED  &amp; white</b>\n mug"
    items = items.drop(columns=[S.CATEGORY, S.PRICE])
    events = events[events[S.ITEM_ID].isin(items[S.ITEM_ID])].head(100).copy()
    events.loc[events.index[:3], S.VALUE] = [0.0, -2.0, np.nan]
    catalog, clean, report = run(items, events, tmp_path, DataConfig(exclude_non_product=False))
    assert catalog.loc[0, S.TITLE] == "RED & white mug"
    assert (catalog[S.CATEGORY] == "").all() and catalog[S.PRICE].isna().all()
    assert report["interactions"]["drops"]["non_positive_quantity"] == 3
    assert (clean[S.VALUE] > 0).all()


def test_datetime_and_iso_timestamps(small, tmp_path):
    items, events, _ = small
    events = events.head(50)
    _, expected, _ = run(items, events, tmp_path)
    as_text = events.assign(timestamp=pd.to_datetime(events[S.TIMESTAMP], unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S"))
    as_datetime = events.assign(timestamp=pd.to_datetime(events[S.TIMESTAMP], unit="s"))
    for variant in (as_text, as_datetime):
        _, clean, _ = run(items, variant, tmp_path)
        assert clean[S.TIMESTAMP].tolist() == expected[S.TIMESTAMP].tolist()


BAD_CASES = {
    "missing_column": (lambda it, ev: (it, ev.drop(columns=[S.TIMESTAMP])), "timestamp"),
    "missing_item_column": (lambda it, ev: (it.drop(columns=[S.TITLE]), ev), "title"),
    "bad_timestamp": (lambda it, ev: (it, ev.assign(timestamp=["yesterday"] + ["2011-01-01"] * (len(ev) - 1))),
                      "timestamp"),
    "null_user_ids": (lambda it, ev: (it, ev.assign(user_id=[None] * 10 + list(ev[S.USER_ID][10:]))), "user_id"),
    "null_item_id_in_catalog": (lambda it, ev: (it.assign(item_id=[None] + list(it[S.ITEM_ID][1:])), ev), "item_id"),
    "conflicting_duplicate_item": (
        lambda it, ev: (pd.concat([it, it.head(1).assign(title="OTHER")]), ev), "item_id"),
    "unknown_items_above_share": (lambda it, ev: (it[it[S.ITEM_ID] != ev[S.ITEM_ID].iloc[0]], ev), "item_id"),
    "bad_price": (lambda it, ev: (it.assign(price=["cheap"] * len(it)), ev), "price"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_inputs_raise_data_error_naming_the_column(small, tmp_path, case):
    items, events, _ = small
    items, events = items.head(60), events[events[S.ITEM_ID].isin(items.head(60)[S.ITEM_ID])].head(200)
    make, column = BAD_CASES[case]
    bad_items, bad_events = make(items.copy(), events.copy())
    with pytest.raises(DataError, match=column) as info:
        run(bad_items, bad_events, tmp_path, DataConfig(exclude_non_product=False, max_unknown_item_share=0.01))
    assert str(tmp_path) in str(info.value)


def test_empty_file(small, tmp_path):
    items, events, _ = small
    with pytest.raises(DataError, match="empty"):
        run(items, events.head(0), tmp_path)


def test_few_unknown_items_are_dropped_and_counted(small, tmp_path):
    items, events, _ = small
    missing = events[S.ITEM_ID].value_counts().index[-1]
    n_missing = int((events[S.ITEM_ID] == missing).sum())
    _, clean, report = run(items[items[S.ITEM_ID] != missing], events, tmp_path, DataConfig(exclude_non_product=False))
    assert report["interactions"]["drops"]["unknown_item"] == n_missing - int(
        events[events[S.ITEM_ID] == missing].duplicated().sum())
    assert missing not in set(clean[S.ITEM_ID])


def test_pseudonymize_users(small, tmp_path, monkeypatch):
    items, events, _ = small
    monkeypatch.setenv("TEST_KEY", "secret")
    privacy = PrivacyConfig(pseudonymize_users=True, key_env="TEST_KEY")
    _, clean, _ = ingest(write(items, tmp_path / "i.parquet"), write(events, tmp_path / "e.parquet"),
                         DataConfig(), privacy)
    _, plain, _ = run(items, events, tmp_path)
    assert not set(clean[S.USER_ID]) & set(events[S.USER_ID])
    assert clean[S.USER_ID].nunique() == plain[S.USER_ID].nunique()
    assert (clean.groupby(S.USER_ID).size().sort_values().to_numpy()
            == plain.groupby(S.USER_ID).size().sort_values().to_numpy()).all()


def test_normalise_text():
    out = normalise_text(pd.Series(["<p>a&nbsp;b</p>", None, "  x \t y  "]))
    assert out.tolist() == ["a b", "", "x y"]

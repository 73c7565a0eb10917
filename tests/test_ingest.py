import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_longtail.config import DataConfig, PrivacyConfig
from ray_longtail.data import read as read_module
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


# --- catalogs with columns of any Arrow type (Amazon-style metadata dumps) ---


def cycle(values, n):
    return [values[i % len(values)] for i in range(n)]


@pytest.fixture
def slice_(small):
    """40 catalog rows (all products, so none is filtered) and their interactions."""
    items, events, _ = small
    items = items[items["is_standard_stockcode"]].head(40).reset_index(drop=True)
    return items, events[events[S.ITEM_ID].isin(items[S.ITEM_ID])].head(300).reset_index(drop=True)


def with_columns(frame, **columns):
    """`frame` as an Arrow table with `columns` (Arrow arrays) added or replacing same-named ones."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, values in columns.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, values)
        else:
            table = table.append_column(name, values)
    return table


def run_arrow(items, events, tmp, config=None):
    """Ingest Arrow tables (or frames) written as Parquet, as a real catalog file would arrive."""
    paths = []
    for name, table in (("items", items), ("events", events)):
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        paths.append(str(tmp / f"{name}.parquet"))
        pq.write_table(table, paths[-1])
    return ingest(*paths, config or DataConfig(exclude_non_product=False))


def store_and_reload(frame, path):
    """Store a cleaned table as the pipeline does (pyarrow from pandas, Parquet) and read it back."""
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), str(path), compression="zstd")
    return pq.read_table(str(path))


POINT = pa.struct([("asin", pa.string()), ("rank", pa.int64())])
EXTRA_TYPES = {  # name: (Arrow type, values cycled over the rows, stored values equal the input's as Python)
    "list_string": (pa.list_(pa.string()), [["B001", "B002"], None, []], True),
    "large_list": (pa.large_list(pa.string()), [["B001"], None, ["B002", "B003"]], True),
    "fixed_size_list": (pa.list_(pa.int32(), 2), [[1, 2], None, [3, 4]], False),
    "list_struct": (pa.list_(POINT), [[{"asin": "B1", "rank": 3}], None, []], True),
    "struct": (pa.struct([("a", pa.int64()), ("b", pa.string())]), [{"a": 1, "b": "x"}, None, {"a": 2, "b": None}],
               True),
    "map": (pa.map_(pa.string(), pa.string()), [[("color", "red")], None, []], False),
    "map_int_keys": (pa.map_(pa.int32(), pa.string()), [[(1, "one"), (2, "two")], None], False),
    "list_of_maps": (pa.list_(pa.map_(pa.string(), pa.int64())), [[[("k", 1)]], None, []], False),
    "binary": (pa.binary(), [b"\x00\xff raw", None, b""], True),
    "large_binary": (pa.large_binary(), [b"abc", None], True),
    "dictionary": (pa.dictionary(pa.int32(), pa.string()), ["red", None, "blue"], True),
    "null": (pa.null(), [None], True),
    "nested_list_int": (pa.list_(pa.list_(pa.int64())), [[[1], [2, 3]], None, [[]]], True),
    "timestamp_tz": (pa.timestamp("ms", tz="Europe/Paris"), [1_300_000_000_000, None], True),
    "decimal": (pa.decimal128(12, 2), [Decimal("12.99"), None, Decimal("0.10")], True),
    "date": (pa.date32(), [15_000, None], True),
}


@pytest.mark.parametrize("kind", sorted(EXTRA_TYPES))
def test_extra_column_of_any_arrow_type_is_kept_and_storable(slice_, tmp_path, kind):
    items, events = slice_
    arrow_type, values, exact = EXTRA_TYPES[kind]
    column = pa.array(cycle(values, len(items)), arrow_type)
    catalog, clean, report = run_arrow(with_columns(items, extra=column), events, tmp_path)
    assert "extra" in catalog.columns and report["items"]["dropped_columns"] == {}
    assert len(catalog) == len(items) and report["items"]["drops"] == {}
    stored = store_and_reload(catalog, tmp_path / "catalog.parquet")
    assert stored["extra"].null_count == column.null_count
    if exact:
        assert stored["extra"].to_pylist() == column.to_pylist()
    stored.to_pandas()
    json.dumps(report)


def test_map_column_keeps_its_entries_as_key_value_records(slice_, tmp_path):
    items, events = slice_
    column = pa.array(cycle([[(1, "one"), (2, "two")], None], len(items)), pa.map_(pa.int32(), pa.string()))
    catalog, _, _ = run_arrow(with_columns(items, extra=column), events, tmp_path)
    stored = store_and_reload(catalog, tmp_path / "catalog.parquet")["extra"].to_pylist()
    assert stored[0] == [{"key": 1, "value": "one"}, {"key": 2, "value": "two"}] and stored[1] is None


def test_decimal_price(slice_, tmp_path):
    items, events = slice_
    prices = [Decimal(f"{p:.2f}") if np.isfinite(p) else None for p in items[S.PRICE]]
    catalog, _, _ = run_arrow(with_columns(items, price=pa.array(prices, pa.decimal128(10, 2))), events, tmp_path)
    assert catalog[S.PRICE].dtype == np.float64
    np.testing.assert_allclose(catalog[S.PRICE], items[S.PRICE].round(2))


def test_list_valued_text_columns_are_joined(slice_, tmp_path):
    items, events = slice_
    n = len(items)
    columns = {
        S.CATEGORY: pa.array(cycle([["Books", " Magazines ", "", None, "Science"], None], n), pa.list_(pa.string())),
        S.DESCRIPTION: pa.array(cycle([["First <b>para</b>.", "", "Second &amp; last."], []], n),
                                pa.list_(pa.string())),
        S.TITLE: pa.array(cycle([["Red", "Mug"], ["Only"]], n), pa.large_list(pa.string())),
        S.BRAND: pa.array(cycle([b"Acme \xff", None], n), pa.binary()),
    }
    catalog, _, _ = run_arrow(with_columns(items, **columns), events, tmp_path)
    assert catalog.loc[0, S.CATEGORY] == "Books > Magazines > Science" and catalog.loc[1, S.CATEGORY] == ""
    assert catalog.loc[0, S.DESCRIPTION] == "First para . Second & last." and catalog.loc[1, S.DESCRIPTION] == ""
    assert catalog.loc[0, S.TITLE] == "Red Mug" and catalog.loc[1, S.TITLE] == "Only"
    assert catalog.loc[0, S.BRAND] == "Acme \ufffd" and catalog.loc[1, S.BRAND] == ""
    store_and_reload(catalog, tmp_path / "catalog.parquet")


def test_normalise_text_of_nested_cells():
    values = pd.Series([np.array(["Books", np.array(["Science", " "])], dtype=object), {"size": "L", "n": None},
                        [("color", "red"), ("fit", "slim")], b"caf\xc3\xa9", np.array([], dtype=object), 3.5, None],
                       dtype=object)
    assert normalise_text(values, " > ").tolist() == [
        "Books > Science", "size: L", "color: red, fit: slim", "café", "", "3.5", ""]


def test_exact_duplicates_with_list_cells_are_dropped(slice_, tmp_path):
    items, events = slice_
    n = len(items)
    table = with_columns(items, also_buy=pa.array([[f"B{i}", "B0"] for i in range(n)], pa.list_(pa.string())),
                         also_view=pa.array(cycle([["X"], None], n), pa.list_(pa.string())))
    repeated = pa.concat_tables([table, table.slice(0, 5)])
    event_table = with_columns(events, tags=pa.array(cycle([["a", "b"], None], len(events)), pa.list_(pa.string())))
    doubled_events = pa.concat_tables([event_table, event_table.slice(0, 7)])
    catalog, clean, report = run_arrow(repeated, doubled_events, tmp_path)
    assert report["items"]["drops"] == {"exact_duplicate": 5} and len(catalog) == n
    as_tuples = doubled_events.to_pandas().assign(tags=lambda d: d["tags"].map(lambda v: v if v is None else tuple(v)))
    assert report["interactions"]["drops"]["exact_duplicate"] == int(as_tuples.duplicated().sum()) >= 7
    for part in ("items", "interactions"):
        r = report[part]
        assert r["rows_in"] == r["rows_out"] + sum(r["drops"].values())
    assert catalog["also_buy"].map(list).tolist() == [[f"B{i}", "B0"] for i in range(n)]
    assert "tags" in clean.columns
    store_and_reload(clean, tmp_path / "interactions.parquet")
    conflicting = pa.concat_tables([table, with_columns(items.head(1), also_buy=pa.array([["OTHER"]]),
                                                        also_view=pa.array([None], pa.list_(pa.string())))])
    with pytest.raises(DataError, match="item_id"):
        run_arrow(conflicting, events, tmp_path)


def test_amazon_style_catalog(slice_, tmp_path):
    """The shape of an Amazon product-metadata dump: list-valued category, description and also_* columns."""
    items, events = slice_
    n = len(items)
    amazon = pa.table({
        S.ITEM_ID: pa.array(items[S.ITEM_ID]),
        S.TITLE: pa.array(items[S.TITLE]),
        S.CATEGORY: pa.array(cycle([["Books", "Magazines", "Science"], []], n), pa.list_(pa.string())),
        S.DESCRIPTION: pa.array(cycle([["Para one.", "Para two."], None], n), pa.list_(pa.string())),
        S.BRAND: pa.array(cycle(["Acme", None], n)),
        S.PRICE: pa.array(items[S.PRICE]),
        "also_buy": pa.array(cycle([["B1", "B2"], []], n), pa.list_(pa.string())),
        "also_view": pa.array(cycle([None, ["B3"]], n), pa.list_(pa.string())),
        "rank": pa.array(cycle([["1,234 in Books", "5 in Science"], None], n), pa.list_(pa.string())),
        "details": pa.array(cycle([{"Publisher": "X", "Pages": "100"}, None], n),
                            pa.struct([("Publisher", pa.string()), ("Pages", pa.string())])),
        "imageURL": pa.array(cycle([[], ["http://x/1.jpg"]], n), pa.list_(pa.string())),
    })
    catalog, _, report = run_arrow(amazon, events, tmp_path)
    assert catalog.loc[0, S.CATEGORY] == "Books > Magazines > Science"
    assert catalog.loc[0, S.DESCRIPTION] == "Para one. Para two."
    assert {"also_buy", "also_view", "rank", "details", "imageURL"} <= set(catalog.columns)
    assert report["items"]["dropped_columns"] == {}
    store_and_reload(catalog, tmp_path / "catalog.parquet").to_pandas()


def test_columns_that_cannot_be_stored_are_dropped_and_counted(slice_, tmp_path, monkeypatch):
    """Arrow types pandas cannot hold (a union), or Parquet cannot store (an empty struct, an interval), are
    left out of the cleaned tables and named in the report; rows are unaffected."""
    items, events = slice_
    n = len(items)
    union = pa.UnionArray.from_sparse(pa.array(cycle([0, 1], n), pa.int8()),
                                      [pa.array(range(n)), pa.array([str(i) for i in range(n)])])
    interval = pa.array(cycle([pa.MonthDayNano([1, 2, 3]), None], n), pa.month_day_nano_interval())
    table = with_columns(items, mixed=union, empty=pa.array(cycle([{}], n), pa.struct([])), interval=interval,
                         also_buy=pa.array(cycle([["B1"]], n), pa.list_(pa.string())))
    monkeypatch.setattr(read_module, "_read_arrow", lambda uri: table if "items" in uri else
                        pa.Table.from_pandas(events, preserve_index=False))
    catalog, _, report = ingest("items.parquet", "events.parquet", DataConfig(exclude_non_product=False))
    dropped = report["items"]["dropped_columns"]
    assert set(dropped) == {"mixed", "empty", "interval"} and all(isinstance(v, str) for v in dropped.values())
    assert not {"mixed", "empty", "interval"} & set(catalog.columns) and "also_buy" in catalog.columns
    assert len(catalog) == n and report["items"]["drops"] == {}
    store_and_reload(catalog, tmp_path / "catalog.parquet")
    json.dumps(report)


ARROW_BAD_CASES = {  # a contract column whose Arrow type has no meaning for it -> DataError naming the column
    "list_item_id": ("items", S.ITEM_ID, lambda n: pa.array([[str(i)] for i in range(n)], pa.list_(pa.string()))),
    "struct_user_id": ("events", S.USER_ID, lambda n: pa.array([{"id": str(i)} for i in range(n)],
                                                                pa.struct([("id", pa.string())]))),
    "list_timestamp": ("events", S.TIMESTAMP, lambda n: pa.array([[i] for i in range(n)], pa.list_(pa.int64()))),
    "list_price": ("items", S.PRICE, lambda n: pa.array([[1.0]] * n, pa.list_(pa.float64()))),
    "string_price": ("items", S.PRICE, lambda n: pa.array(["$12.99"] * n)),
}


@pytest.mark.parametrize("case", sorted(ARROW_BAD_CASES))
def test_contract_column_of_unusable_arrow_type_raises_data_error(slice_, tmp_path, case):
    items, events = slice_
    table_name, column, make = ARROW_BAD_CASES[case]
    tables = {"items": with_columns(items), "events": with_columns(events)}
    tables[table_name] = with_columns(tables[table_name].to_pandas(), **{column: make(tables[table_name].num_rows)})
    with pytest.raises(DataError, match=column) as info:
        run_arrow(tables["items"], tables["events"], tmp_path)
    assert str(tmp_path) in str(info.value)


def test_union_title_raises_data_error(slice_, monkeypatch):
    items, events = slice_
    n = len(items)
    union = pa.UnionArray.from_sparse(pa.array([0] * n, pa.int8()), [pa.array(items[S.TITLE]), pa.array(range(n))])
    table = with_columns(items, title=union)
    monkeypatch.setattr(read_module, "_read_arrow", lambda uri: table)
    with pytest.raises(DataError, match="'title'"):
        ingest("items.parquet", "events.parquet", DataConfig())


def test_decimal_and_date_timestamps(slice_, tmp_path):
    items, events = slice_
    _, expected, _ = run_arrow(items, events, tmp_path)
    as_decimal = with_columns(events, timestamp=pa.array([Decimal(int(t)) for t in events[S.TIMESTAMP]],
                                                         pa.decimal128(12, 0)))
    _, clean, _ = run_arrow(items, as_decimal, tmp_path)
    assert clean[S.TIMESTAMP].tolist() == expected[S.TIMESTAMP].tolist()
    days = (events[S.TIMESTAMP] // 86400).astype("int32")
    _, by_day, _ = run_arrow(items, with_columns(events, timestamp=pa.array(days, pa.date32())), tmp_path)
    assert (by_day[S.TIMESTAMP] % 86400 == 0).all()

"""The bad-input corpus: real shop exports go wrong in many ways. Every case below is either a clean `UserError`
naming the file (or config key), the column and an example of what is wrong, or a clean success whose dropped
rows are counted by reason in the ingest report. Never a traceback, never a silently wrong table.

Each case starts from 60 real bundled items and their real interactions and breaks one thing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_longtail.config import DataConfig, load_config
from ray_longtail.data import schema as S
from ray_longtail.data.ingest import bundled_paths, ingest
from ray_longtail.errors import ConfigError, DataError

Table = pd.DataFrame | pa.Table | bytes


@pytest.fixture(scope="module")
def base():
    items_path, events_path = bundled_paths()
    events = pd.read_parquet(events_path).head(20000)
    items = pd.read_parquet(items_path)
    items = items[items[S.ITEM_ID].isin(events[S.ITEM_ID])].head(60).reset_index(drop=True)
    events = events[events[S.ITEM_ID].isin(items[S.ITEM_ID])].head(300).reset_index(drop=True)
    return items, events


@dataclass(frozen=True)
class Case:
    """`make(items, events) -> (items, events)`; each table a DataFrame (written as `ext`), an Arrow table
    (Parquet) or raw bytes (written as they are). `error`: regexes the UserError must all match (None: must
    succeed); `drops`: {reason: rows} the report must hold; `check(catalog, interactions)` for what must be
    true of a success."""

    make: Callable
    error: tuple[str, ...] | None = None
    drops: dict | None = None
    check: Callable | None = None
    items_ext: str = "parquet"
    events_ext: str = "parquet"


def _first(frame: pd.DataFrame, column: str, values: list) -> pd.DataFrame:
    """The frame with its first len(values) rows of `column` replaced."""
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[frame.index[:len(values)], column] = values
    return frame


def _write(table: Table, path, ext: str) -> str:
    if isinstance(table, bytes):
        path.write_bytes(table)
    elif isinstance(table, pa.Table):
        pq.write_table(table, path)
    elif ext == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path)
    return str(path)


def _arrow(frame: pd.DataFrame, name: str, array: pa.Array) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False).append_column(name, array)


def _whale(events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    n = 100_000
    start = int(events[S.TIMESTAMP].min())
    whale = pd.DataFrame({S.USER_ID: "whale", S.ITEM_ID: np.resize(items[S.ITEM_ID].to_numpy(), n),
                          S.TIMESTAMP: start + np.arange(n), S.EVENT: "purchase", S.VALUE: 1.0})
    return pd.concat([events[[S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.EVENT, S.VALUE]], whale], ignore_index=True)


def _ms(events: pd.DataFrame) -> list[int]:
    return [int(events[S.TIMESTAMP].iloc[0]) * 1000]


LATIN1 = "CAFÉ crème brûlée"
YEAR_2230 = 8_204_889_600

CATALOG_CASES = {
    "list_extra_column": Case(lambda it, ev: (_arrow(it, "also_buy", pa.array([["1", "2"]] * len(it))), ev),
                              check=lambda cat, _: list(cat["also_buy"].iloc[0]) == ["1", "2"]),
    "struct_extra_column": Case(lambda it, ev: (_arrow(it, "dims", pa.array([{"w": 1.0, "h": 2.0}] * len(it))), ev),
                                check=lambda cat, _: "dims" in cat.columns),
    "map_extra_column": Case(lambda it, ev: (_arrow(it, "attrs", pa.array([[("colour", "red")]] * len(it),
                                                                         pa.map_(pa.string(), pa.string()))), ev),
                             check=lambda cat, _: "attrs" in cat.columns),
    "nested_list_of_structs": Case(lambda it, ev: (_arrow(it, "offers", pa.array(
        [[{"shop": "a", "price": [1.0, 2.0]}]] * len(it))), ev), check=lambda cat, _: "offers" in cat.columns),
    "binary_extra_column": Case(lambda it, ev: (_arrow(it, "thumb", pa.array([b"\x89PNG\x00\xff"] * len(it))), ev),
                                check=lambda cat, _: len(cat) == 60),
    "list_valued_category": Case(lambda it, ev: (_arrow(it.drop(columns=[S.CATEGORY]), S.CATEGORY, pa.array(
        [["Home", "Kitchen", "Mugs"]] * len(it))), ev),
        check=lambda cat, _: (cat[S.CATEGORY] == "Home > Kitchen > Mugs").all()),
    "list_valued_description": Case(lambda it, ev: (_arrow(it.drop(columns=[S.DESCRIPTION]), S.DESCRIPTION, pa.array(
        [["First paragraph.", "Second one."]] * len(it))), ev),
        check=lambda cat, _: (cat[S.DESCRIPTION] == "First paragraph. Second one.").all()),
    "mixed_types_in_price": Case(lambda it, ev: (_first(it, S.PRICE, [1.5, "cheap"]), ev), items_ext="csv",
                                 error=("items.csv", "'price'", "cheap")),
    "ids_mixed_int_and_text": Case(
        lambda it, ev: (it.assign(item_id=[int(x) if x.isdigit() else x for x in it[S.ITEM_ID]]),
                        ev.assign(item_id=[int(x) if x.isdigit() else x for x in ev[S.ITEM_ID]])),
        items_ext="csv", events_ext="csv", drops={},
        check=lambda cat, inter: inter[S.ITEM_ID].isin(cat[S.ITEM_ID]).all()),
    "duplicate_id_conflicting_rows": Case(lambda it, ev: (pd.concat([it, it.head(1).assign(title="OTHER")]), ev),
                                          error=("items.parquet", "'item_id'", "repeats")),
    "exact_duplicate_rows": Case(lambda it, ev: (pd.concat([it, it.head(3)]), ev), drops={"exact_duplicate": 3}),
    "description_of_1e5_chars": Case(lambda it, ev: (it.assign(description="lorem ipsum " * 9000), ev),
                                     check=lambda cat, _: cat[S.DESCRIPTION].str.len().min() >= 100_000),
    "empty_strings_everywhere": Case(lambda it, ev: (it.assign(title="", description="", category="", brand=""), ev),
                                     check=lambda cat, _: (cat[S.TITLE] == "").all() and len(cat) == 60),
    "all_titles_null": Case(lambda it, ev: (it.assign(title=None), ev), check=lambda cat, _: len(cat) == 60),
    "empty_item_id": Case(lambda it, ev: (_first(it, S.ITEM_ID, [""]), ev), error=("items.parquet", "'item_id'",
                                                                                  "empty ids")),
    "whitespace_item_id": Case(lambda it, ev: (_first(it, S.ITEM_ID, ["   "]), ev), error=("'item_id'", "empty ids")),
    "null_item_id": Case(lambda it, ev: (_first(it, S.ITEM_ID, [None]), ev), error=("'item_id'",)),
    "list_valued_item_id": Case(lambda it, ev: (_arrow(it.drop(columns=[S.ITEM_ID]), S.ITEM_ID, pa.array(
        [[x] for x in it[S.ITEM_ID]])), ev), error=("items.parquet", "'item_id'", "cannot be an id")),
    "numeric_titles": Case(lambda it, ev: (it.assign(title=range(len(it))), ev),
                           check=lambda cat, _: cat[S.TITLE].iloc[1] == "1"),
    "html_in_text": Case(lambda it, ev: (_first(it, S.TITLE, ["<b>RED &amp; white</b> mug"]), ev),
                         check=lambda cat, _: cat[S.TITLE].iloc[0] == "RED & white mug"),
    "non_utf8_csv": Case(lambda it, ev: (it.assign(title=LATIN1).to_csv(index=False).encode("latin-1"), ev),
                         items_ext="csv", error=("items.csv", "'title'", "UTF-8", "iconv")),
    "utf8_bom_csv": Case(lambda it, ev: (("\ufeff" + it.to_csv(index=False)).encode(), ev), items_ext="csv",
                         check=lambda cat, _: len(cat) == 60),
    "semicolon_separated_csv": Case(lambda it, ev: (it.to_csv(index=False, sep=";").encode(), ev), items_ext="csv",
                                    error=("items.csv", "missing required column 'item_id'", "columns present")),
    "duplicate_column_names": Case(lambda it, ev: (
        ("item_id,title,title\n" + "\n".join(f"{i},a,b" for i in it[S.ITEM_ID])).encode(), ev), items_ext="csv",
        error=("items.csv", "title")),
    "missing_title_column": Case(lambda it, ev: (it.drop(columns=[S.TITLE]), ev), error=("items.parquet", "'title'")),
    "only_a_header": Case(lambda it, ev: (it.head(0), ev), items_ext="csv", error=("items.csv", "empty")),
    "not_a_parquet_file": Case(lambda it, ev: (b"PAR1 this is not parquet", ev),
                               error=("items.parquet", "cannot read as parquet")),
    "negative_and_infinite_prices": Case(lambda it, ev: (_first(it, S.PRICE, [-3.0, np.inf]), ev),
                                         check=lambda cat, _: len(cat) == 60),
}

INTERACTION_CASES = {
    "timestamp_in_the_future": Case(lambda it, ev: (it, _first(ev, S.TIMESTAMP, [YEAR_2230])),
                                    drops={"implausible_timestamp": 1},
                                    check=lambda _, inter: inter[S.TIMESTAMP].max() < time.time()),
    "timestamp_before_1970": Case(lambda it, ev: (it, _first(ev, S.TIMESTAMP, [-86_400])),
                                  drops={"implausible_timestamp": 1}),
    "timestamp_zero_sentinel": Case(lambda it, ev: (it, _first(ev, S.TIMESTAMP, [0, 0, 0])),
                                    drops={"implausible_timestamp": 3}),
    "seconds_and_milliseconds_mixed": Case(lambda it, ev: (it, _first(ev, S.TIMESTAMP, _ms(ev))), drops={},
                                           check=lambda _, inter: inter[S.TIMESTAMP].min() > 1.2e9),
    "all_microseconds": Case(lambda it, ev: (it, ev.assign(timestamp=ev[S.TIMESTAMP] * 1_000_000)), drops={},
                             check=lambda _, inter: inter[S.TIMESTAMP].between(1.2e9, 1.4e9).all()),
    "all_nanoseconds": Case(lambda it, ev: (it, ev.assign(timestamp=ev[S.TIMESTAMP] * 1_000_000_000)), drops={},
                            check=lambda _, inter: inter[S.TIMESTAMP].between(1.2e9, 1.4e9).all()),
    "iso_text_and_epoch_numbers_mixed": Case(
        lambda it, ev: (it, _first(ev.assign(timestamp=ev[S.TIMESTAMP].astype(str)), S.TIMESTAMP,
                                   ["2010-12-05T10:00:00"])), events_ext="csv", drops={},
        check=lambda _, inter: inter[S.TIMESTAMP].between(1.2e9, 1.4e9).all()),
    "timestamp_beyond_int64": Case(lambda it, ev: (it, _first(ev.assign(timestamp=ev[S.TIMESTAMP].astype(str)),
                                                             S.TIMESTAMP, ["1" + "0" * 30])),
                                   events_ext="csv", drops={"implausible_timestamp": 1}),
    "unparseable_timestamp": Case(lambda it, ev: (it, _first(ev, S.TIMESTAMP, ["yesterday"])), events_ext="csv",
                                  error=("events.csv", "'timestamp'", "yesterday")),
    "boolean_timestamps": Case(lambda it, ev: (it, ev.assign(timestamp=True)), error=("'timestamp'", "booleans")),
    "null_timestamps": Case(lambda it, ev: (it, _first(ev, S.TIMESTAMP, [None, None])),
                            drops={"missing_timestamp": 2}),
    "timezone_offsets": Case(lambda it, ev: (it, ev.assign(timestamp=pd.to_datetime(ev[S.TIMESTAMP], unit="s")
                                                            .dt.strftime("%Y-%m-%dT%H:%M:%S+02:00"))),
                             check=lambda _, inter: inter[S.TIMESTAMP].between(1.2e9, 1.4e9).all()),
    "negative_and_nan_quantities": Case(lambda it, ev: (it, _first(ev, S.VALUE, [-1.0, 0.0, np.nan])),
                                        drops={"non_positive_quantity": 3}),
    "non_numeric_quantities": Case(lambda it, ev: (it, _first(ev, S.VALUE, ["lots", "many"])), events_ext="csv",
                                   drops={"non_positive_quantity": 2}),
    "negative_ratings_are_kept": Case(lambda it, ev: (it, _first(ev.assign(event="rating"), S.VALUE, [-3.0])),
                                      drops={}, check=lambda _, inter: (inter[S.VALUE] == -3.0).any()),
    "one_user_with_1e5_events": Case(lambda it, ev: (it, _whale(ev, it)), drops={},
                                     check=lambda _, inter: (inter[S.USER_ID] == "whale").sum() == 100_000),
    "empty_user_ids": Case(lambda it, ev: (it, _first(ev, S.USER_ID, ["", "", ""])),
                           error=("events.parquet", "'user_id'", "empty")),
    "list_valued_user_ids": Case(lambda it, ev: (it, _arrow(ev.drop(columns=[S.USER_ID]), S.USER_ID, pa.array(
        [[1]] * len(ev)))), error=("'user_id'", "cannot be an id")),
    "missing_event_names": Case(lambda it, ev: (it, _first(ev, S.EVENT, [None, None])), drops={},
                                check=lambda _, inter: (inter[S.EVENT] == "interaction").sum() == 2),
    "all_items_unknown": Case(lambda it, ev: (it, ev.assign(item_id="no-such-item")),
                              error=("events.parquet", "'item_id'", "no-such-item", "max_unknown_item_share")),
    "non_utf8_csv": Case(lambda it, ev: (it, ev.assign(user_id="Zoë").to_csv(index=False).encode("latin-1")),
                         events_ext="csv", error=("events.csv", "UTF-8", "iconv")),
    "missing_user_column": Case(lambda it, ev: (it, ev.drop(columns=[S.USER_ID])),
                                error=("events.parquet", "'user_id'")),
    "no_rows_left": Case(lambda it, ev: (it, ev.assign(value=-1.0)),
                         error=("events.parquet", "no interactions left", "non_positive_quantity")),
}


@pytest.mark.parametrize("name", sorted(CATALOG_CASES) + sorted(INTERACTION_CASES))
def test_bad_input_is_a_clean_error_or_a_counted_success(base, tmp_path, name):
    case = CATALOG_CASES.get(name) or INTERACTION_CASES[name]
    items, events = case.make(base[0].copy(), base[1].copy())
    items_uri = _write(items, tmp_path / f"items.{case.items_ext}", case.items_ext)
    events_uri = _write(events, tmp_path / f"events.{case.events_ext}", case.events_ext)
    config = DataConfig(exclude_non_product=False)
    if case.error:
        with pytest.raises(DataError) as info:
            ingest(items_uri, events_uri, config)
        for pattern in case.error:
            assert pattern in str(info.value), (pattern, str(info.value))
        return
    catalog, interactions, report = ingest(items_uri, events_uri, config)
    for part in ("items", "interactions"):
        assert report[part]["rows_in"] == report[part]["rows_out"] + sum(report[part]["drops"].values())
    if case.drops is not None:
        assert report["interactions"]["drops"] | report["items"]["drops"] == case.drops
    assert interactions[S.TIMESTAMP].dtype == np.int64
    assert case.check is None or case.check(catalog, interactions)


CONFIG_CASES = {
    "unknown_key_in_file": ("embed:\n  batch_sise: 32\n", [], ("embed.batch_sise",)),
    "unknown_section_in_file": ("embedding:\n  batch_size: 32\n", [], ("embedding",)),
    "wrong_type_in_file": ("embed:\n  batch_size: lots\n", [], ("embed.batch_size", "lots")),
    "out_of_range_in_file": ("discover:\n  head_share: 1.5\n", [], ("discover.head_share", "1.5")),
    "enum_typo_in_file": ("rerank:\n  method: xqad\n", [], ("rerank.method", "xqad", "xquad")),
    "not_a_mapping": ("- embed\n- rank\n", [], ("mapping",)),
    "invalid_yaml": ("embed: [batch_size: 3\n", [], ("not valid YAML",)),
    "list_where_a_number_goes": ("", ["rank.eta=[0.1]"], ("rank.eta",)),
    "override_without_equals": ("", ["rank.eta"], ("rank.eta",)),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_bad_config_names_the_key_and_the_value(tmp_path, name):
    text, overrides, patterns = CONFIG_CASES[name]
    path = tmp_path / "config.yaml"
    path.write_text(text or "{}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides=overrides)
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))


def test_the_corpus_has_at_least_40_cases():
    assert len(CATALOG_CASES) + len(INTERACTION_CASES) + len(CONFIG_CASES) >= 40

"""Ingest: read the catalog and interactions (Parquet or CSV, local or any pyarrow.fs URI), validate them
against the data contract, clean them, and count every dropped row by reason.

Validation problems raise `DataError` naming the file, the column and an example value. Cleaning never drops a
row silently: `TableReport.drops` holds the count per reason, and rows_in == rows_out + sum(drops).

Real catalogs carry columns of any Arrow type (Amazon dumps: list<string> `also_buy`, a list-valued `category`
hierarchy, `description` paragraphs). Contract text columns are flattened to text (`cells`); extra columns are kept
as they are when Parquet can store them, and otherwise left out and named in `TableReport.dropped_columns`. Files
are read by `read.read_table`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ray_longtail.config import DataConfig, PrivacyConfig
from ray_longtail.data import schema as S
from ray_longtail.data.cells import (
    READ_ERRORS,
    as_text,
    brief,
    duplicated_rows,
    id_strings,
    normalise_text,
    numeric,
    price_column,
    to_unix_seconds,
)
from ray_longtail.data.read import DROPPED_ATTR, read_table
from ray_longtail.errors import DataError, UserError

__all__ = ["TableReport", "bundled_paths", "clean_interactions", "clean_items", "ingest", "normalise_text",
           "pseudonymize", "read_table", "to_unix_seconds"]

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).parent / "datasets" / "online_retail"
_ITEM_CONTRACT = frozenset((S.ITEM_ID, *S.TEXT_COLUMNS, S.PRICE))
_INTERACTION_CONTRACT = frozenset((*S.INTERACTION_REQUIRED, S.EVENT, S.VALUE))
# a list-valued category is a hierarchy path; other list-valued text (paragraphs, title parts) reads as prose
_LIST_SEPARATORS = {S.CATEGORY: " > "}
_PROBE_ROWS = 1000  # rows written and read back to check an extra column's Parquet type round-trips
_EARLIEST_TS = 31_536_000  # 1971-01-01 UTC


def bundled_paths() -> tuple[str, str]:
    """(items, interactions) of the bundled Online Retail dataset."""
    return str(BUNDLED_DIR / "items.parquet"), str(BUNDLED_DIR / "interactions.parquet")


@dataclass
class TableReport:
    source: str
    rows_in: int = 0
    rows_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    dropped_columns: dict[str, str] = field(default_factory=dict)  # extra column -> why it could not be kept

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.drops[reason] = self.drops.get(reason, 0) + int(n)
            log.info("%s: dropped %d rows (%s)", self.source, n, reason)

    def drop_column(self, name: str, reason: str) -> None:
        self.dropped_columns[str(name)] = reason
        log.warning("%s: left out column %r (%s)", self.source, name, reason)


def _require(df: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing required column {missing[0]!r} "
                        f"(columns present: {', '.join(map(str, df.columns))})")


def _start_report(df: pd.DataFrame, source: str, contract: frozenset[str]) -> TableReport:
    """A report that already names the columns read_table left out; a contract column among them is an error,
    since cleaning without it would silently change what the pipeline means by e.g. a title."""
    report = TableReport(source=source, rows_in=len(df))
    for name, reason in df.attrs.get(DROPPED_ATTR, {}).items():
        if name in contract:
            raise DataError(f"{source}: column {name!r} {reason}; store it as text (or numbers for price/value)")
        report.drop_column(name, reason)
    return report


def _example(df: pd.DataFrame, mask: pd.Series) -> str:
    return repr(df.loc[mask].head(1).to_dict("records")[0]) if mask.any() else ""


def _store_problem(values: pd.Series) -> str | None:
    """Why pyarrow cannot write this column to Parquet and read it back (None when it can). Type inference runs
    on the whole column; the write/read-back, whose failures depend on the type, on its first rows."""
    try:
        table = pa.Table.from_pandas(values.to_frame(), preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table.slice(0, _PROBE_ROWS), sink)
        pq.read_table(pa.BufferReader(sink.getvalue())).to_pandas()
    except READ_ERRORS as exc:
        return f"cannot be stored in Parquet: {brief(exc)}"
    return None


def _drop_unstorable(df: pd.DataFrame, contract: frozenset[str], report: TableReport) -> pd.DataFrame:
    """Extra columns ride along into catalog.parquet / interactions.parquet, written by pyarrow from pandas; one
    that cannot be written or read back (an empty struct, an interval, mixed-type cells) would fail the pipeline
    after ingest, so it is left out here and named in the report instead."""
    unstorable = []
    for position, name in enumerate(df.columns):
        problem = None if name in contract else _store_problem(df.iloc[:, position])
        if problem:
            report.drop_column(name, problem)
            unstorable.append(position)
    return df.iloc[:, [i for i in range(df.shape[1]) if i not in unstorable]] if unstorable else df


def _non_product(values: pd.Series, source: str) -> pd.Series:
    """Rows flagged False in `is_standard_stockcode` (missing counts as a product). Only true/false or 0/1 flags
    are accepted: the truthiness of a string like 'False' or of a list would silently keep or drop rows."""
    flags = values.astype(object).where(values.notna(), True)
    valid = flags.map(lambda v: isinstance(v, (bool, int, float, np.bool_, np.number)))
    if not valid.all():
        raise DataError(f"{source}: column 'is_standard_stockcode' has non-boolean values, e.g. "
                        f"{flags[~valid].iloc[0]!r}; use true/false")
    return ~flags.astype(bool)


def clean_items(df: pd.DataFrame, source: str, config: DataConfig) -> tuple[pd.DataFrame, TableReport]:
    """Validate and clean the catalog. Returns the cleaned catalog (unique item_id) and its report.

    Contract text columns become plain strings (a list-valued category is joined with ' > ', other list-valued
    text with spaces); extra columns are kept as they are, unless Parquet cannot store them."""
    report = _start_report(df, source, _ITEM_CONTRACT)
    _require(df, S.ITEM_REQUIRED, source)
    ids = id_strings(df[S.ITEM_ID], source, S.ITEM_ID)
    null_id = ids.isna()
    if null_id.any():
        raise DataError(f"{source}: column 'item_id' has {int(null_id.sum())} empty ids, e.g. row "
                        f"{_example(df, null_id)}; every catalog row needs an item_id")
    df = df.copy()
    df.attrs.pop(DROPPED_ATTR, None)  # reported; not to be carried into the stored catalog
    df[S.ITEM_ID] = ids
    for column in S.TEXT_COLUMNS:
        separator = _LIST_SEPARATORS.get(column, " ")
        df[column] = normalise_text(df[column], separator) if column in df.columns else ""
    df[S.PRICE] = price_column(df[S.PRICE], source) if S.PRICE in df.columns else np.nan
    df = _drop_unstorable(df, _ITEM_CONTRACT, report)
    duplicated = duplicated_rows(df)
    report.drop("exact_duplicate", duplicated.sum())
    df = df[~duplicated]
    conflict = df[S.ITEM_ID].duplicated(keep=False)
    if conflict.any():
        example = df.loc[conflict, S.ITEM_ID].iloc[0]
        raise DataError(f"{source}: column 'item_id' repeats with different content, e.g. {example!r} "
                        f"({int(conflict.sum())} rows); item ids must be unique")
    if config.exclude_non_product and "is_standard_stockcode" in df.columns:
        non_product = _non_product(df["is_standard_stockcode"], source)
        report.drop("non_product", non_product.sum())
        df = df[~non_product]
    df = df.reset_index(drop=True)
    report.rows_out = len(df)
    return df, report


def _drop_missing_ids(df: pd.DataFrame, source: str, config: DataConfig, report: TableReport) -> pd.DataFrame:
    """Rows without a user or item id cannot be used; a few are dropped and counted, many mean a broken file."""
    for column in (S.USER_ID, S.ITEM_ID):
        df[column] = id_strings(df[column], source, column)
    missing_id = df[S.USER_ID].isna() | df[S.ITEM_ID].isna()
    if missing_id.mean() > config.max_unknown_item_share:
        column = S.USER_ID if df[S.USER_ID].isna().any() else S.ITEM_ID
        raise DataError(f"{source}: column {column!r} is empty in {int(missing_id.sum())} rows "
                        f"({missing_id.mean():.1%}), e.g. row {_example(df, missing_id)}")
    report.drop("missing_id", missing_id.sum())
    return df[~missing_id]


def _event_names(values: pd.Series) -> pd.Series:
    """Event types as stripped strings; a missing or blank event is a generic 'interaction'."""
    names = as_text(values, " ").str.strip()
    return names.where(names != "", "interaction")


def _drop_unknown_items(df: pd.DataFrame, catalog_ids: pd.Index, excluded_ids: pd.Index | None, source: str,
                        config: DataConfig, report: TableReport) -> pd.DataFrame:
    """Rows whose item the catalog removed on purpose are counted apart from items it never had; too many of
    the latter mean the two files do not belong together."""
    if excluded_ids is not None and len(excluded_ids):
        excluded = df[S.ITEM_ID].isin(excluded_ids)
        report.drop("non_product_item", excluded.sum())
        df = df[~excluded]
    unknown = ~df[S.ITEM_ID].isin(catalog_ids)
    if unknown.any():
        share = float(unknown.mean())
        if share > config.max_unknown_item_share:
            raise DataError(
                f"{source}: column 'item_id' has {int(unknown.sum())} rows ({share:.1%}) whose item is not in the "
                f"catalog, e.g. {df.loc[unknown, S.ITEM_ID].iloc[0]!r}; above data.max_unknown_item_share="
                f"{config.max_unknown_item_share}")
        report.drop("unknown_item", unknown.sum())
        df = df[~unknown]
    return df


def _drop_implausible_times(df: pd.DataFrame, source: str, report: TableReport) -> pd.DataFrame:
    """Rows timed before 1971 (the first epoch year holds sentinels: 0, -1, counters) or more than a day after
    now (a unit or typing error) are dropped and counted: either would stretch the time split over empty years."""
    ts = df[S.TIMESTAMP]
    implausible = (ts < _EARLIEST_TS) | (ts > time.time() + 86_400)
    if implausible.any():
        example = pd.to_datetime(ts[implausible].iloc[0], unit="s", errors="coerce")
        log.warning("%s: %d rows timed outside 1971..now, e.g. %s", source, int(implausible.sum()),
                    example if not pd.isna(example) else ts[implausible].iloc[0])
    report.drop("implausible_timestamp", implausible.sum())
    return df[~implausible]


def _sample_users(df: pd.DataFrame, fraction: float, report: TableReport) -> pd.DataFrame:
    """A seeded random share of users, all of each sampled user's rows (quick runs keep whole histories)."""
    users = np.sort(df[S.USER_ID].unique())
    rng = np.random.default_rng(0)
    keep = set(rng.choice(users, size=max(1, int(round(len(users) * fraction))), replace=False))
    sampled_out = ~df[S.USER_ID].isin(keep)
    report.drop("user_sampled_out", sampled_out.sum())
    return df[~sampled_out]


def clean_interactions(df: pd.DataFrame, catalog_ids: pd.Index, source: str, config: DataConfig,
                       excluded_ids: pd.Index | None = None) -> tuple[pd.DataFrame, TableReport]:
    """Validate and clean interactions against the cleaned catalog's ids (`excluded_ids`: items the catalog
    cleaning removed on purpose, e.g. non-product codes; their rows are counted apart from unknown items)."""
    report = _start_report(df, source, _INTERACTION_CONTRACT)
    _require(df, S.INTERACTION_REQUIRED, source)
    df = df.copy()
    df.attrs.pop(DROPPED_ATTR, None)
    df = _drop_missing_ids(df, source, config, report)
    df[S.TIMESTAMP] = to_unix_seconds(df[S.TIMESTAMP], source)
    missing_ts = df[S.TIMESTAMP].isna()
    report.drop("missing_timestamp", missing_ts.sum())
    df = df[~missing_ts]
    df = _drop_implausible_times(df, source, report)
    df[S.TIMESTAMP] = df[S.TIMESTAMP].astype("int64")
    df[S.EVENT] = _event_names(df[S.EVENT]) if S.EVENT in df.columns else "interaction"
    df[S.VALUE] = numeric(df[S.VALUE]).astype("float64") if S.VALUE in df.columns else 1.0
    df = _drop_unstorable(df, _INTERACTION_CONTRACT, report)
    duplicated = duplicated_rows(df)
    report.drop("exact_duplicate", duplicated.sum())
    df = df[~duplicated]
    bad_quantity = (df[S.EVENT] == S.PURCHASE) & ~(df[S.VALUE] > 0)
    report.drop("non_positive_quantity", bad_quantity.sum())
    df = df[~bad_quantity]
    if config.events:
        filtered = ~df[S.EVENT].isin(config.events)
        report.drop("event_not_selected", filtered.sum())
        df = df[~filtered]
    df = _drop_unknown_items(df, catalog_ids, excluded_ids, source, config, report)
    if config.sample_users_fraction < 1.0:
        df = _sample_users(df, config.sample_users_fraction, report)
    df = df.sort_values([S.TIMESTAMP, S.USER_ID, S.ITEM_ID], kind="stable").reset_index(drop=True)
    report.rows_out = len(df)
    return df, report


def pseudonymize(user_ids: pd.Series, privacy: PrivacyConfig) -> pd.Series:
    """Keyed hash (HMAC-SHA256, 16 hex chars) of each user id; the key comes from an environment variable."""
    key = os.environ.get(privacy.key_env)
    if not key:
        raise UserError(f"privacy.pseudonymize_users is on but the environment variable {privacy.key_env} "
                        "holding the hash key is not set")
    uniques = user_ids.unique()
    mapping = {u: hmac.new(key.encode(), str(u).encode(), hashlib.sha256).hexdigest()[:16] for u in uniques}
    return user_ids.map(mapping).astype("str")


def ingest(items_uri: str, interactions_uri: str, config: DataConfig,
           privacy: PrivacyConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read, validate and clean both tables. Returns (catalog, interactions, report dict)."""
    raw_items = read_table(items_uri)
    catalog, items_report = clean_items(raw_items, items_uri, config)
    raw_ids = id_strings(raw_items[S.ITEM_ID], items_uri, S.ITEM_ID).dropna()
    excluded = pd.Index(raw_ids).difference(catalog[S.ITEM_ID])
    raw = read_table(interactions_uri)
    interactions, inter_report = clean_interactions(raw, pd.Index(catalog[S.ITEM_ID]), interactions_uri, config,
                                                    excluded_ids=excluded)
    if privacy is not None and privacy.pseudonymize_users:
        interactions[S.USER_ID] = pseudonymize(interactions[S.USER_ID], privacy)
    if interactions.empty:
        raise DataError(f"{interactions_uri}: no interactions left after cleaning ({inter_report.drops})")
    report = {"items": asdict(items_report), "interactions": asdict(inter_report),
              "catalog_items": len(catalog), "users": int(interactions[S.USER_ID].nunique()),
              "items_with_interactions": int(interactions[S.ITEM_ID].nunique())}
    return catalog, interactions, report

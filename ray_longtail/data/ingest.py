"""Ingest: read the catalog and interactions (Parquet or CSV, local or any pyarrow.fs URI), validate them
against the data contract, clean them, and count every dropped row by reason.

Validation problems raise `DataError` naming the file, the column and an example value. Cleaning never drops a
row silently: `IngestReport.drops` holds the count per reason, and rows_in == rows_out + sum(drops).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads

from ray_longtail.artifacts import resolve_filesystem
from ray_longtail.config import DataConfig, PrivacyConfig
from ray_longtail.data import schema as S
from ray_longtail.errors import DataError, UserError

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).parent / "datasets" / "online_retail"
_HTML_TAG = r"<[^>]+>"
_ID_COLUMNS = {S.ITEM_ID, S.USER_ID}


def bundled_paths() -> tuple[str, str]:
    """(items, interactions) of the bundled Online Retail dataset."""
    return str(BUNDLED_DIR / "items.parquet"), str(BUNDLED_DIR / "interactions.parquet")


@dataclass
class TableReport:
    source: str
    rows_in: int = 0
    rows_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.drops[reason] = self.drops.get(reason, 0) + int(n)
            log.info("%s: dropped %d rows (%s)", self.source, n, reason)


def read_table(uri: str) -> pd.DataFrame:
    """Read a Parquet or CSV file (or a folder of them) from a path or URI; id columns are read as strings."""
    fs, path = resolve_filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pa.fs.FileType.NotFound:
        raise DataError(f"{uri}: file not found")
    lower = path.lower().rstrip("/")
    fmt = "csv" if lower.endswith((".csv", ".csv.gz", ".tsv")) else "parquet"
    try:
        if fmt == "csv":
            convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in _ID_COLUMNS},
                                           strings_can_be_null=True)
            parse = pacsv.ParseOptions(delimiter="\t" if lower.endswith(".tsv") else ",")
            dataset = pads.dataset(path, filesystem=fs, format=pads.CsvFileFormat(
                parse_options=parse, convert_options=convert))
        else:
            dataset = pads.dataset(path, filesystem=fs, format="parquet")
        table = dataset.to_table()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{uri}: cannot read as {fmt}: {exc}") from exc
    if table.num_rows == 0:
        raise DataError(f"{uri}: the file is empty (no rows)")
    for name in _ID_COLUMNS & set(table.column_names):
        if not pa.types.is_string(table.schema.field(name).type):
            table = table.set_column(table.column_names.index(name), name, pc.cast(table[name], pa.string()))
    return table.to_pandas()


def _require(df: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing required column {missing[0]!r} "
                        f"(columns present: {', '.join(map(str, df.columns))})")


def _example(df: pd.DataFrame, mask: pd.Series) -> str:
    return repr(df.loc[mask].head(1).to_dict("records")[0]) if mask.any() else ""


def normalise_text(values: pd.Series) -> pd.Series:
    """Strip HTML tags/entities and collapse whitespace; missing -> ''."""
    text = values.astype("str").where(values.notna(), "")
    text = text.str.replace(_HTML_TAG, " ", regex=True)
    text = text.map(_unescape) if text.str.contains("&", regex=False).any() else text
    return text.str.replace(r"\s+", " ", regex=True).str.strip()


def _unescape(value: str) -> str:
    import html

    return html.unescape(value)


def to_unix_seconds(values: pd.Series, source: str) -> pd.Series:
    """int64 unix seconds from ints (seconds, or milliseconds when obviously so), datetimes or date strings."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values.dt.tz_convert("UTC") if values.dt.tz is not None else values
        return ts.astype("datetime64[s]").astype("int64").where(values.notna())
    if pd.api.types.is_numeric_dtype(values):
        numeric = values.astype("float64")
        if numeric.max() > 1e12:
            log.info("%s: timestamps look like milliseconds; converting to seconds", source)
            numeric = numeric // 1000
        return numeric
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna() & values.notna()
    if bad.any():
        raise DataError(f"{source}: column 'timestamp' has unparseable values, e.g. {values[bad].iloc[0]!r} "
                        f"({int(bad.sum())} rows); use unix seconds or ISO-8601 datetimes")
    return parsed.astype("datetime64[s, UTC]").astype("int64").astype("float64").where(parsed.notna())


def clean_items(df: pd.DataFrame, source: str, config: DataConfig) -> tuple[pd.DataFrame, TableReport]:
    """Validate and clean the catalog. Returns the cleaned catalog (unique item_id) and its report."""
    report = TableReport(source=source, rows_in=len(df))
    _require(df, S.ITEM_REQUIRED, source)
    null_id = df[S.ITEM_ID].isna() | (df[S.ITEM_ID].astype("str").str.strip() == "")
    if null_id.any():
        raise DataError(f"{source}: column 'item_id' has {int(null_id.sum())} empty ids, e.g. row "
                        f"{_example(df, null_id)}; every catalog row needs an item_id")
    df = df.copy()
    df[S.ITEM_ID] = df[S.ITEM_ID].astype("str").str.strip()
    for column in S.TEXT_COLUMNS:
        df[column] = normalise_text(df[column]) if column in df.columns else ""
    if S.PRICE in df.columns:
        price = pd.to_numeric(df[S.PRICE], errors="coerce")
        bad = price.isna() & df[S.PRICE].notna()
        if bad.any():
            raise DataError(f"{source}: column 'price' has non-numeric values, e.g. {df[S.PRICE][bad].iloc[0]!r}")
        df[S.PRICE] = price.astype("float64")
    else:
        df[S.PRICE] = np.nan
    duplicated = df.duplicated(keep="first")
    report.drop("exact_duplicate", duplicated.sum())
    df = df[~duplicated]
    conflict = df[S.ITEM_ID].duplicated(keep=False)
    if conflict.any():
        example = df.loc[conflict, S.ITEM_ID].iloc[0]
        raise DataError(f"{source}: column 'item_id' repeats with different content, e.g. {example!r} "
                        f"({int(conflict.sum())} rows); item ids must be unique")
    if config.exclude_non_product and "is_standard_stockcode" in df.columns:
        non_product = ~df["is_standard_stockcode"].fillna(True).astype(bool)
        report.drop("non_product", non_product.sum())
        df = df[~non_product]
    df = df.reset_index(drop=True)
    report.rows_out = len(df)
    return df, report


def clean_interactions(df: pd.DataFrame, catalog_ids: pd.Index, source: str, config: DataConfig,
                       excluded_ids: pd.Index | None = None) -> tuple[pd.DataFrame, TableReport]:
    """Validate and clean interactions against the cleaned catalog's ids (`excluded_ids`: items the catalog
    cleaning removed on purpose, e.g. non-product codes; their rows are counted apart from unknown items)."""
    report = TableReport(source=source, rows_in=len(df))
    _require(df, S.INTERACTION_REQUIRED, source)
    df = df.copy()
    for column in (S.USER_ID, S.ITEM_ID):
        values = df[column].astype("str").str.strip()
        df[column] = values.where(df[column].notna() & (values != ""))
    missing_id = df[S.USER_ID].isna() | df[S.ITEM_ID].isna()
    if missing_id.mean() > config.max_unknown_item_share:
        column = S.USER_ID if df[S.USER_ID].isna().any() else S.ITEM_ID
        raise DataError(f"{source}: column {column!r} is empty in {int(missing_id.sum())} rows "
                        f"({missing_id.mean():.1%}), e.g. row {_example(df, missing_id)}")
    report.drop("missing_id", missing_id.sum())
    df = df[~missing_id]
    df[S.TIMESTAMP] = to_unix_seconds(df[S.TIMESTAMP], source)
    missing_ts = df[S.TIMESTAMP].isna()
    report.drop("missing_timestamp", missing_ts.sum())
    df = df[~missing_ts]
    df[S.TIMESTAMP] = df[S.TIMESTAMP].astype("int64")
    df[S.EVENT] = df[S.EVENT].astype("str").fillna("interaction") if S.EVENT in df.columns else "interaction"
    if S.VALUE in df.columns:
        df[S.VALUE] = pd.to_numeric(df[S.VALUE], errors="coerce").astype("float64")
    else:
        df[S.VALUE] = 1.0
    duplicated = df.duplicated(keep="first")
    report.drop("exact_duplicate", duplicated.sum())
    df = df[~duplicated]
    bad_quantity = (df[S.EVENT] == S.PURCHASE) & ~(df[S.VALUE] > 0)
    report.drop("non_positive_quantity", bad_quantity.sum())
    df = df[~bad_quantity]
    if config.events:
        filtered = ~df[S.EVENT].isin(config.events)
        report.drop("event_not_selected", filtered.sum())
        df = df[~filtered]
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
    if config.sample_users_fraction < 1.0:
        users = np.sort(df[S.USER_ID].unique())
        rng = np.random.default_rng(0)
        keep = set(rng.choice(users, size=max(1, int(round(len(users) * config.sample_users_fraction))),
                              replace=False))
        sampled_out = ~df[S.USER_ID].isin(keep)
        report.drop("user_sampled_out", sampled_out.sum())
        df = df[~sampled_out]
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
    excluded = pd.Index(raw_items[S.ITEM_ID].astype("str").str.strip()).difference(catalog[S.ITEM_ID])
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

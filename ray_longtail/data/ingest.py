"""Ingest: read the catalog and interactions (Parquet or CSV, local or any pyarrow.fs URI), validate them
against the data contract, clean them, and count every dropped row by reason.

Validation problems raise `DataError` naming the file, the column and an example value. Cleaning never drops a
row silently: `IngestReport.drops` holds the count per reason, and rows_in == rows_out + sum(drops).

Real catalogs carry columns of any Arrow type (Amazon dumps: list<string> `also_buy`, a list-valued `category`
hierarchy, `description` paragraphs). Contract text columns are flattened to text; extra columns are kept as they
are when Parquet can store them, and otherwise left out and named in `TableReport.dropped_columns`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ray_longtail.artifacts import resolve_filesystem
from ray_longtail.config import DataConfig, PrivacyConfig
from ray_longtail.data import schema as S
from ray_longtail.errors import DataError, UserError

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).parent / "datasets" / "online_retail"
_HTML_TAG = r"<[^>]+>"
_ID_COLUMNS = {S.ITEM_ID, S.USER_ID}
_ITEM_CONTRACT = frozenset((S.ITEM_ID, *S.TEXT_COLUMNS, S.PRICE))
_INTERACTION_CONTRACT = frozenset((*S.INTERACTION_REQUIRED, S.EVENT, S.VALUE))
# a list-valued category is a hierarchy path; other list-valued text (paragraphs, title parts) reads as prose
_LIST_SEPARATORS = {S.CATEGORY: " > "}
_DROPPED_ATTR = "dropped_columns"  # DataFrame.attrs key: columns read_table could not bring into pandas
_NESTED = (list, tuple, dict, np.ndarray)  # how Arrow list/struct/map cells arrive from to_pandas
_PROBE_ROWS = 1000  # rows written and read back to check an extra column's Parquet type round-trips
_EARLIEST_TS = 31_536_000  # 1971-01-01 UTC
_READ_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)


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


def read_table(uri: str) -> pd.DataFrame:
    """Read a Parquet or CSV file (or a folder of them) from a path or URI; id columns are read as strings.

    Columns of Arrow types pandas has no equivalent for (e.g. unions) are left out rather than failing the read;
    they are named, with the reason, in `frame.attrs["dropped_columns"]` so cleaning can count them (or reject
    the file when one is a contract column)."""
    table = _read_arrow(uri)
    names = table.column_names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"{uri}: column {repeated[0]!r} appears more than once; column names must be unique")
    for name in _ID_COLUMNS & set(names):
        table = table.set_column(names.index(name), name, _arrow_ids(table[name], uri, name))
    frame, dropped = _to_pandas(_maps_as_records(table), uri)
    frame.attrs[_DROPPED_ATTR] = dropped
    return frame


def _read_arrow(uri: str) -> pa.Table:
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
    except (pa.ArrowException, OSError) as exc:
        if "invalid UTF8" in str(exc):
            raise DataError(f"{uri}: is not UTF-8 text ({_brief(exc)}); re-save it as UTF-8, e.g. "
                            f"`iconv -f latin1 -t utf-8`") from exc
        raise DataError(f"{uri}: cannot read as {fmt}: {exc}") from exc
    if table.num_rows == 0:
        raise DataError(f"{uri}: the file is empty (no rows)")
    if fmt == "csv":
        _require_utf8(table, uri)
    return table


def _require_utf8(table: pa.Table, uri: str) -> None:
    """pyarrow types a CSV column with bytes that are not UTF-8 as binary; text read from it would be mojibake."""
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            example = next((v for v in column.to_pylist() if v is not None and not _is_utf8(v)), b"")
            raise DataError(f"{uri}: column {name!r} is not UTF-8 text, e.g. {example[:60]!r}; re-save the file as "
                            "UTF-8, e.g. `iconv -f latin1 -t utf-8`")


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _arrow_ids(column: pa.ChunkedArray, uri: str, name: str) -> pa.ChunkedArray:
    """Ids are joined across the two tables as strings, so cast them here; binary ids that are not valid UTF-8
    are decoded with replacement, and a list or record has no single string form, so it is a contract error."""
    if pa.types.is_string(column.type):
        return column
    try:
        return pc.cast(column, pa.string())
    except pa.ArrowException as exc:
        kind = column.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            return pa.chunked_array([pa.array([_cell_text(v, "") or None for v in column.to_pylist()], pa.string())])
        raise DataError(f"{uri}: column {name!r} has Arrow type {kind}, which cannot be an id; "
                        "ids must be strings or integers") from exc


def _without_maps(kind: pa.DataType) -> pa.DataType:
    """`kind` with every map<k, v> (at any depth) replaced by list<struct<key: k, value: v>>, its physical layout."""
    if pa.types.is_map(kind):
        return pa.list_(pa.struct([("key", _without_maps(kind.key_type)), ("value", _without_maps(kind.item_type))]))
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(_without_maps(kind.field(i).type)) for i in range(kind.num_fields)])
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(kind.value_field.with_type(_without_maps(kind.value_type)), kind.list_size)
    for is_kind, make in ((pa.types.is_list, pa.list_), (pa.types.is_large_list, pa.large_list),
                          (getattr(pa.types, "is_list_view", None), getattr(pa, "list_view", None)),
                          (getattr(pa.types, "is_large_list_view", None), getattr(pa, "large_list_view", None))):
        if is_kind is not None and is_kind(kind):
            return make(kind.value_field.with_type(_without_maps(kind.value_type)))
    return kind


def _maps_as_records(table: pa.Table) -> pa.Table:
    """Arrow maps reach pandas as lists of (key, value) tuples, which pyarrow cannot always infer back into a
    type (a map<int, string> fails), so an extra map column is cast to list<struct<key, value>>: the same data, in
    a form that round-trips. Text contract columns keep their tuples, which `_cell_text` renders as 'key: value'."""
    for i, name in enumerate(table.column_names):
        kind = table.schema.field(i).type
        target = _without_maps(kind)
        if name in S.TEXT_COLUMNS or target == kind:
            continue
        try:
            table = table.set_column(i, name, table.column(i).cast(target))
        except pa.ArrowException as exc:  # left as it is; cleaning drops it if it cannot be stored
            log.info("column %r: cannot cast %s to %s (%s)", name, kind, target, _brief(exc))
    return table


def _to_pandas(table: pa.Table, uri: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """table.to_pandas(), leaving out (and naming, with the reason) columns pandas cannot represent; the common
    case is one conversion, as before, so pandas metadata (e.g. a stored index) is honoured."""
    try:
        return table.to_pandas(), {}
    except _READ_ERRORS:
        pass
    dropped: dict[str, str] = {}
    for name in table.column_names:
        try:
            table[name].to_pandas()
        except _READ_ERRORS as exc:
            dropped[name] = f"has Arrow type {table.schema.field(name).type}, which pandas cannot hold: {_brief(exc)}"
    table = table.drop_columns(list(dropped))
    error: BaseException | None = None
    # pandas metadata gone stale (a column retyped after pandas wrote the file) can break the conversion on its own
    for ignore_metadata in (False, True):
        try:
            return table.to_pandas(ignore_metadata=ignore_metadata), dropped
        except _READ_ERRORS as exc:
            error = exc
    raise DataError(f"{uri}: cannot convert the table to pandas: {_brief(error)}") from error


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _require(df: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing required column {missing[0]!r} "
                        f"(columns present: {', '.join(map(str, df.columns))})")


def _start_report(df: pd.DataFrame, source: str, contract: frozenset[str]) -> TableReport:
    """A report that already names the columns read_table left out; a contract column among them is an error,
    since cleaning without it would silently change what the pipeline means by e.g. a title."""
    report = TableReport(source=source, rows_in=len(df))
    for name, reason in df.attrs.get(_DROPPED_ATTR, {}).items():
        if name in contract:
            raise DataError(f"{source}: column {name!r} {reason}; store it as text (or numbers for price/value)")
        report.drop_column(name, reason)
    return report


def _example(df: pd.DataFrame, mask: pd.Series) -> str:
    return repr(df.loc[mask].head(1).to_dict("records")[0]) if mask.any() else ""


def _join(parts: Iterable[str], separator: str) -> str:
    return separator.join(part for part in (p.strip() for p in parts) if part)


def _cell_text(value: Any, separator: str) -> str:
    """One cell as text. Arrow lists arrive from to_pandas as ndarrays, structs as dicts, maps as lists of
    (key, value) tuples and binary as bytes: nested parts are stringified, stripped and joined with `separator`
    (empties skipped), records as 'key: value, ...', bytes decoded as UTF-8 with replacement; missing -> ''."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return _pairs_text(value.items(), separator)
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return _pairs_text(value, separator)
    if isinstance(value, (list, tuple, np.ndarray)):
        return _join((_cell_text(v, separator) for v in value), separator)
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _pairs_text(pairs: Iterable[tuple[Any, Any]], separator: str) -> str:
    texts = ((_cell_text(key, separator), _cell_text(value, separator).strip()) for key, value in pairs)
    return _join((f"{key}: {text}" for key, text in texts if text), ", ")


def _as_text(values: pd.Series, separator: str) -> pd.Series:
    """Each cell as a string, whatever its Arrow type; missing -> ''."""
    if values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype):
        return values.astype(object).map(lambda v: _cell_text(v, separator)).astype("str")
    return values.astype("str").where(values.notna(), "")


def normalise_text(values: pd.Series, separator: str = " ") -> pd.Series:
    """Strip HTML tags/entities and collapse whitespace; missing -> ''. List-valued cells are joined with
    `separator`, records rendered as 'key: value' and bytes decoded (see `_cell_text`)."""
    text = _as_text(values, separator)
    text = text.str.replace(_HTML_TAG, " ", regex=True)
    text = text.map(_unescape) if text.str.contains("&", regex=False).any() else text
    return text.str.replace(r"\s+", " ", regex=True).str.strip()


def _unescape(value: str) -> str:
    import html

    return html.unescape(value)


def _id_strings(values: pd.Series, source: str, column: str) -> pd.Series:
    """Stripped string ids, missing (None or blank) as NA. A list or record cell has no single id, so it is a
    contract error; bytes are decoded."""
    if values.dtype == object:
        nested = values.map(lambda v: isinstance(v, _NESTED))
        if nested.any():
            raise DataError(f"{source}: column {column!r} holds lists or records, e.g. {values[nested].iloc[0]!r}; "
                            "ids must be strings or integers")
        values = values.map(lambda v: _cell_text(v, "") if isinstance(v, (bytes, bytearray, memoryview)) else v)
    text = values.astype("str").str.strip()
    return text.where(values.notna() & (text != ""))


def _number_cell(value: Any) -> Any:
    """A cell pd.to_numeric can take: scalars as they are (Arrow decimals arrive as Decimal), bytes decoded,
    anything else (lists, records, objects) NaN so the caller reports it as non-numeric."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _cell_text(value, "")
    if isinstance(value, (str, int, float, Decimal, np.number, np.bool_)) or value is None:
        return value
    return np.nan


def _numeric(values: pd.Series) -> pd.Series:
    """pd.to_numeric(errors="coerce") that also takes object columns holding any Arrow type's cells."""
    if values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object).map(_number_cell)
    return pd.to_numeric(values, errors="coerce")


def _price(values: pd.Series, source: str) -> pd.Series:
    """Price as float64. Non-numeric text (e.g. '$12.99', '12,99') is rejected rather than guessed at, since
    currency and decimal-comma conventions differ per catalog."""
    price = _numeric(values)
    bad = price.isna() & values.notna()
    if bad.any():
        raise DataError(f"{source}: column 'price' has non-numeric values, e.g. {values[bad].iloc[0]!r}")
    return price.astype("float64")


def _all_numbers(values: pd.Series) -> bool:
    """Whether an object column's present cells are all numbers (e.g. Arrow decimals as Decimal objects)."""
    present = values.dropna()
    return bool(present.map(lambda v: isinstance(v, (int, float, Decimal, np.number))
                            and not isinstance(v, (bool, np.bool_))).all())


def _epoch_seconds(numeric: pd.Series, source: str) -> pd.Series:
    """Unix epoch numbers -> seconds, each value by its magnitude: from 1e11 (1973 in ms, year 5138 in s) on a
    value is milliseconds, from 1e14 microseconds, from 1e17 nanoseconds (one column may mix units)."""
    magnitude = numeric.abs()
    divisor = pd.Series(np.select([magnitude >= 1e17, magnitude >= 1e14, magnitude >= 1e11], [1e9, 1e6, 1e3], 1.0),
                        index=numeric.index)
    for per_second, unit in ((1e3, "milliseconds"), (1e6, "microseconds"), (1e9, "nanoseconds")):
        if (divisor == per_second).any():
            log.info("%s: %d timestamps look like %s; converting to seconds", source,
                     int((divisor == per_second).sum()), unit)
    return np.floor(numeric / divisor)


def to_unix_seconds(values: pd.Series, source: str) -> pd.Series:
    """float64 unix seconds (NaN where missing) from epoch numbers (s, ms, us or ns, told apart per value),
    datetimes, date strings or numeric strings; booleans and lists are rejected."""
    if pd.api.types.is_bool_dtype(values) or (values.dtype == object and values.map(
            lambda v: isinstance(v, (bool, np.bool_))).any()):
        raise DataError(f"{source}: column 'timestamp' holds booleans, e.g. {values.dropna().iloc[0]!r}; "
                        "use unix seconds or ISO-8601 datetimes")
    if values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
        values = _numeric(values) if _all_numbers(values) else values.map(
            lambda v: np.nan if isinstance(v, _NESTED) else v)
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values.dt.tz_convert("UTC") if values.dt.tz is not None else values
        return ts.astype("datetime64[s]").astype("int64").where(values.notna()).astype("float64")
    if pd.api.types.is_numeric_dtype(values):
        return _epoch_seconds(values.astype("float64"), source)
    as_numbers = pd.to_numeric(values, errors="coerce")  # epoch numbers written as text, e.g. in a CSV
    if as_numbers.notna().any():
        dates = to_unix_seconds(values.where(as_numbers.isna()), source) if as_numbers.isna().any() else None
        seconds = _epoch_seconds(as_numbers, source)
        return seconds if dates is None else seconds.fillna(dates)
    try:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{source}: column 'timestamp' has values of type {values.dtype} that are not times "
                        f"({_brief(exc)}); use unix seconds or ISO-8601 datetimes") from exc
    bad = parsed.isna() & values.notna()
    if bad.any():
        raise DataError(f"{source}: column 'timestamp' has unparseable values, e.g. {values[bad].iloc[0]!r} "
                        f"({int(bad.sum())} rows); use unix seconds or ISO-8601 datetimes")
    return parsed.astype("datetime64[s, UTC]").astype("int64").astype("float64").where(parsed.notna())


def _store_problem(values: pd.Series) -> str | None:
    """Why pyarrow cannot write this column to Parquet and read it back (None when it can). Type inference runs
    on the whole column; the write/read-back, whose failures depend on the type, on its first rows."""
    try:
        table = pa.Table.from_pandas(values.to_frame(), preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table.slice(0, _PROBE_ROWS), sink)
        pq.read_table(pa.BufferReader(sink.getvalue())).to_pandas()
    except _READ_ERRORS as exc:
        return f"cannot be stored in Parquet: {_brief(exc)}"
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


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def _cell_key(value: Any) -> str:
    try:
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _duplicated(df: pd.DataFrame) -> pd.Series:
    """df.duplicated(keep="first"), which hashes cells: list/struct/map cells (ndarray, dict, list) are
    unhashable, so such columns are compared on a JSON form of each cell instead (same content, same text)."""
    keys = {}
    for position in range(df.shape[1]):
        values = df.iloc[:, position]
        unhashable = values.dtype == object and not values.map(_hashable).all()
        keys[position] = values.map(_cell_key) if unhashable else values
    return pd.DataFrame(keys, index=df.index).duplicated(keep="first")


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
    ids = _id_strings(df[S.ITEM_ID], source, S.ITEM_ID)
    null_id = ids.isna()
    if null_id.any():
        raise DataError(f"{source}: column 'item_id' has {int(null_id.sum())} empty ids, e.g. row "
                        f"{_example(df, null_id)}; every catalog row needs an item_id")
    df = df.copy()
    df.attrs.pop(_DROPPED_ATTR, None)  # reported; not to be carried into the stored catalog
    df[S.ITEM_ID] = ids
    for column in S.TEXT_COLUMNS:
        separator = _LIST_SEPARATORS.get(column, " ")
        df[column] = normalise_text(df[column], separator) if column in df.columns else ""
    df[S.PRICE] = _price(df[S.PRICE], source) if S.PRICE in df.columns else np.nan
    df = _drop_unstorable(df, _ITEM_CONTRACT, report)
    duplicated = _duplicated(df)
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
        df[column] = _id_strings(df[column], source, column)
    missing_id = df[S.USER_ID].isna() | df[S.ITEM_ID].isna()
    if missing_id.mean() > config.max_unknown_item_share:
        column = S.USER_ID if df[S.USER_ID].isna().any() else S.ITEM_ID
        raise DataError(f"{source}: column {column!r} is empty in {int(missing_id.sum())} rows "
                        f"({missing_id.mean():.1%}), e.g. row {_example(df, missing_id)}")
    report.drop("missing_id", missing_id.sum())
    return df[~missing_id]


def _event_names(values: pd.Series) -> pd.Series:
    """Event types as stripped strings; a missing or blank event is a generic 'interaction'."""
    names = _as_text(values, " ").str.strip()
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
    df.attrs.pop(_DROPPED_ATTR, None)
    df = _drop_missing_ids(df, source, config, report)
    df[S.TIMESTAMP] = to_unix_seconds(df[S.TIMESTAMP], source)
    missing_ts = df[S.TIMESTAMP].isna()
    report.drop("missing_timestamp", missing_ts.sum())
    df = df[~missing_ts]
    df = _drop_implausible_times(df, source, report)
    df[S.TIMESTAMP] = df[S.TIMESTAMP].astype("int64")
    df[S.EVENT] = _event_names(df[S.EVENT]) if S.EVENT in df.columns else "interaction"
    df[S.VALUE] = _numeric(df[S.VALUE]).astype("float64") if S.VALUE in df.columns else 1.0
    df = _drop_unstorable(df, _INTERACTION_CONTRACT, report)
    duplicated = _duplicated(df)
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
    raw_ids = _id_strings(raw_items[S.ITEM_ID], items_uri, S.ITEM_ID).dropna()
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

"""Cell values of any Arrow type as the data contract's types: text (lists joined, records as 'key: value',
bytes decoded, HTML stripped), ids, numbers, prices and unix seconds, and row duplicates over unhashable cells.

Arrow lists reach pandas as ndarrays, structs as dicts, maps as lists of (key, value) tuples, decimals as Decimal
and binary as bytes; the converters here take such cells and either convert them or raise `DataError` naming the
source, the column and an example value.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ray_longtail.errors import DataError

log = logging.getLogger(__name__)

_HTML_TAG = r"<[^>]+>"
NESTED = (list, tuple, dict, np.ndarray)  # how Arrow list/struct/map cells arrive from to_pandas
READ_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)


def brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _join(parts: Iterable[str], separator: str) -> str:
    return separator.join(part for part in (p.strip() for p in parts) if part)


def cell_text(value: Any, separator: str) -> str:
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
        return _join((cell_text(v, separator) for v in value), separator)
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _pairs_text(pairs: Iterable[tuple[Any, Any]], separator: str) -> str:
    texts = ((cell_text(key, separator), cell_text(value, separator).strip()) for key, value in pairs)
    return _join((f"{key}: {text}" for key, text in texts if text), ", ")


def as_text(values: pd.Series, separator: str) -> pd.Series:
    """Each cell as a string, whatever its Arrow type; missing -> ''."""
    if values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype):
        return values.astype(object).map(lambda v: cell_text(v, separator)).astype("str")
    return values.astype("str").where(values.notna(), "")


def normalise_text(values: pd.Series, separator: str = " ") -> pd.Series:
    """Strip HTML tags/entities and collapse whitespace; missing -> ''. List-valued cells are joined with
    `separator`, records rendered as 'key: value' and bytes decoded (see `cell_text`)."""
    text = as_text(values, separator)
    text = text.str.replace(_HTML_TAG, " ", regex=True)
    text = text.map(_unescape) if text.str.contains("&", regex=False).any() else text
    return text.str.replace(r"\s+", " ", regex=True).str.strip()


def _unescape(value: str) -> str:
    import html

    return html.unescape(value)


def id_strings(values: pd.Series, source: str, column: str) -> pd.Series:
    """Stripped string ids, missing (None or blank) as NA. A list or record cell has no single id, so it is a
    contract error; bytes are decoded."""
    if values.dtype == object:
        nested = values.map(lambda v: isinstance(v, NESTED))
        if nested.any():
            raise DataError(f"{source}: column {column!r} holds lists or records, e.g. {values[nested].iloc[0]!r}; "
                            "ids must be strings or integers")
        values = values.map(lambda v: cell_text(v, "") if isinstance(v, (bytes, bytearray, memoryview)) else v)
    text = values.astype("str").str.strip()
    return text.where(values.notna() & (text != ""))


def _number_cell(value: Any) -> Any:
    """A cell pd.to_numeric can take: scalars as they are (Arrow decimals arrive as Decimal), bytes decoded,
    anything else (lists, records, objects) NaN so the caller reports it as non-numeric."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return cell_text(value, "")
    if isinstance(value, (str, int, float, Decimal, np.number, np.bool_)) or value is None:
        return value
    return np.nan


def numeric(values: pd.Series) -> pd.Series:
    """pd.to_numeric(errors="coerce") that also takes object columns holding any Arrow type's cells."""
    if values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object).map(_number_cell)
    return pd.to_numeric(values, errors="coerce")


def price_column(values: pd.Series, source: str) -> pd.Series:
    """Price as float64. Non-numeric text (e.g. '$12.99', '12,99') is rejected rather than guessed at, since
    currency and decimal-comma conventions differ per catalog."""
    price = numeric(values)
    bad = price.isna() & values.notna()
    if bad.any():
        raise DataError(f"{source}: column 'price' has non-numeric values, e.g. {values[bad].iloc[0]!r}")
    return price.astype("float64")


def _all_numbers(values: pd.Series) -> bool:
    """Whether an object column's present cells are all numbers (e.g. Arrow decimals as Decimal objects)."""
    present = values.dropna()
    return bool(present.map(lambda v: isinstance(v, (int, float, Decimal, np.number))
                            and not isinstance(v, (bool, np.bool_))).all())


def _epoch_seconds(numbers: pd.Series, source: str) -> pd.Series:
    """Unix epoch numbers -> seconds, each value by its magnitude: from 1e11 (1973 in ms, year 5138 in s) on a
    value is milliseconds, from 1e14 microseconds, from 1e17 nanoseconds (one column may mix units)."""
    magnitude = numbers.abs()
    divisor = pd.Series(np.select([magnitude >= 1e17, magnitude >= 1e14, magnitude >= 1e11], [1e9, 1e6, 1e3], 1.0),
                        index=numbers.index)
    for per_second, unit in ((1e3, "milliseconds"), (1e6, "microseconds"), (1e9, "nanoseconds")):
        if (divisor == per_second).any():
            log.info("%s: %d timestamps look like %s; converting to seconds", source,
                     int((divisor == per_second).sum()), unit)
    return np.floor(numbers / divisor)


def to_unix_seconds(values: pd.Series, source: str) -> pd.Series:
    """float64 unix seconds (NaN where missing) from epoch numbers (s, ms, us or ns, told apart per value),
    datetimes, date strings or numeric strings; booleans and lists are rejected."""
    if pd.api.types.is_bool_dtype(values) or (values.dtype == object and values.map(
            lambda v: isinstance(v, (bool, np.bool_))).any()):
        raise DataError(f"{source}: column 'timestamp' holds booleans, e.g. {values.dropna().iloc[0]!r}; "
                        "use unix seconds or ISO-8601 datetimes")
    if values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
        values = numeric(values) if _all_numbers(values) else values.map(
            lambda v: np.nan if isinstance(v, NESTED) else v)
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
                        f"({brief(exc)}); use unix seconds or ISO-8601 datetimes") from exc
    bad = parsed.isna() & values.notna()
    if bad.any():
        raise DataError(f"{source}: column 'timestamp' has unparseable values, e.g. {values[bad].iloc[0]!r} "
                        f"({int(bad.sum())} rows); use unix seconds or ISO-8601 datetimes")
    return parsed.astype("datetime64[s, UTC]").astype("int64").astype("float64").where(parsed.notna())


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


def duplicated_rows(df: pd.DataFrame) -> pd.Series:
    """df.duplicated(keep="first"), which hashes cells: list/struct/map cells (ndarray, dict, list) are
    unhashable, so such columns are compared on a JSON form of each cell instead (same content, same text)."""
    keys = {}
    for position in range(df.shape[1]):
        values = df.iloc[:, position]
        unhashable = values.dtype == object and not values.map(_hashable).all()
        keys[position] = values.map(_cell_key) if unhashable else values
    return pd.DataFrame(keys, index=df.index).duplicated(keep="first")

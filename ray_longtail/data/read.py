"""Read a Parquet or CSV file (or a folder of them) from a path or any pyarrow.fs URI into pandas, whatever
Arrow types its columns have: ids as strings, maps as lists of records, columns pandas cannot hold left out and
named (with the reason) in `frame.attrs[DROPPED_ATTR]`. Unreadable input raises `DataError` saying what to fix.
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads

from ray_longtail.artifacts import resolve_filesystem
from ray_longtail.data import schema as S
from ray_longtail.data.cells import READ_ERRORS, brief, cell_text
from ray_longtail.errors import DataError

log = logging.getLogger(__name__)

ID_COLUMNS = {S.ITEM_ID, S.USER_ID}
DROPPED_ATTR = "dropped_columns"  # DataFrame.attrs key: columns read_table could not bring into pandas


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
    for name in ID_COLUMNS & set(names):
        table = table.set_column(names.index(name), name, _arrow_ids(table[name], uri, name))
    frame, dropped = _to_pandas(_maps_as_records(table), uri)
    frame.attrs[DROPPED_ATTR] = dropped
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
            convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in ID_COLUMNS},
                                           strings_can_be_null=True)
            parse = pacsv.ParseOptions(delimiter="\t" if lower.endswith(".tsv") else ",")
            dataset = pads.dataset(path, filesystem=fs, format=pads.CsvFileFormat(
                parse_options=parse, convert_options=convert))
        else:
            dataset = pads.dataset(path, filesystem=fs, format="parquet")
        table = dataset.to_table()
    except (pa.ArrowException, OSError) as exc:
        if "invalid UTF8" in str(exc):
            raise DataError(f"{uri}: is not UTF-8 text ({brief(exc)}); re-save it as UTF-8, e.g. "
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
            return pa.chunked_array([pa.array([cell_text(v, "") or None for v in column.to_pylist()], pa.string())])
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
    a form that round-trips. Text contract columns keep their tuples, which `cell_text` renders as 'key: value'."""
    for i, name in enumerate(table.column_names):
        kind = table.schema.field(i).type
        target = _without_maps(kind)
        if name in S.TEXT_COLUMNS or target == kind:
            continue
        try:
            table = table.set_column(i, name, table.column(i).cast(target))
        except pa.ArrowException as exc:  # left as it is; cleaning drops it if it cannot be stored
            log.info("column %r: cannot cast %s to %s (%s)", name, kind, target, brief(exc))
    return table


def _to_pandas(table: pa.Table, uri: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """table.to_pandas(), leaving out (and naming, with the reason) columns pandas cannot represent; the common
    case is one conversion, as before, so pandas metadata (e.g. a stored index) is honoured."""
    try:
        return table.to_pandas(), {}
    except READ_ERRORS:
        pass
    dropped: dict[str, str] = {}
    for name in table.column_names:
        try:
            table[name].to_pandas()
        except READ_ERRORS as exc:
            dropped[name] = f"has Arrow type {table.schema.field(name).type}, which pandas cannot hold: {brief(exc)}"
    table = table.drop_columns(list(dropped))
    error: BaseException | None = None
    # pandas metadata gone stale (a column retyped after pandas wrote the file) can break the conversion on its own
    for ignore_metadata in (False, True):
        try:
            return table.to_pandas(ignore_metadata=ignore_metadata), dropped
        except READ_ERRORS as exc:
            error = exc
    raise DataError(f"{uri}: cannot convert the table to pandas: {brief(error)}") from error

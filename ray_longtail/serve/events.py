"""Feedback events logged by `POST /events` (impressions, clicks, add-to-carts, purchases): one Parquet segment per
request under `<run>/events/` (the run's own location: a local folder or any pyarrow URI such as s3://). A segment
is written atomically (it appears whole under its name or not at all) before the request is acknowledged, so an
acknowledged event survives any replica or head restart. `serve.events_store` puts them elsewhere (any folder or
URI); `open_events` reads either kind back for `ray-longtail run --events`, `refresh` and `ab-report`."""

from __future__ import annotations

import time
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from ray_longtail.artifacts import MANIFEST, RunStore, join_uri, resolve_filesystem, split_uri
from ray_longtail.config import FEEDBACK_EVENT_TYPES
from ray_longtail.errors import UserError

EVENTS = "events"
EVENT_TYPES = FEEDBACK_EVENT_TYPES
EVENT_SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("event", pa.string()),
                          ("timestamp", pa.int64()), ("request_id", pa.string()), ("variant", pa.string()),
                          ("position", pa.int64()), ("received", pa.int64())])


class EventLog:
    """An events store: `append` a batch, `read` them all back (for reports and the next model). `folder`: where
    the segments are inside `store` ("" = its root)."""

    def __init__(self, store: RunStore, folder: str = EVENTS):
        self.store = store
        self.folder = folder
        self.uri = join_uri(store.uri, folder) if folder else store.uri

    def _name(self, segment: str) -> str:
        return f"{self.folder}/{segment}" if self.folder else segment

    def append(self, events: list[dict]) -> str:
        """Write one batch (dicts with the `EVENT_SCHEMA` fields; `ts` or `timestamp` missing = now) as a new
        segment; returns its name."""
        now = int(time.time())
        rows = [{"user_id": e["user_id"], "item_id": e["item_id"], "event": e["event"],
                 "timestamp": e.get("ts") if e.get("ts") is not None else e.get("timestamp", now),
                 "request_id": e.get("request_id"), "variant": e.get("variant"), "position": e.get("position"),
                 "received": now} for e in events]
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        self.store.write_table(self._name(name), pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))
        return name

    def segments(self) -> list[str]:
        return self.store.listing(self.folder, ".parquet")

    def read(self) -> pd.DataFrame:
        """Every logged event, in the order the segments were written."""
        tables = [self.store.read_arrow(self._name(name)) for name in self.segments()]
        return pa.concat_tables([EVENT_SCHEMA.empty_table(), *tables]).to_pandas()


def open_events(uri: str, create: bool = False) -> EventLog:
    """The events store at `uri`: a run folder (its `events/`) or a folder of segments (local or a pyarrow URI).
    A folder that does not exist is an error unless `create` (the app creates its store on first write)."""
    fs, path = resolve_filesystem(str(uri).rstrip("/"))
    if not create and fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise UserError(f"no events store at {uri}: give a run folder (its events/) or a folder of event segments")
    store = RunStore(*split_uri(uri))
    if store.exists(MANIFEST):
        return EventLog(store, EVENTS)
    return EventLog(store, "")

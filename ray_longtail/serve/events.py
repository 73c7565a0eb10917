"""Feedback events logged by `POST /events` (impressions, clicks, add-to-carts, purchases): one Parquet segment per
request under `<run>/events/` (the run's own location: a local folder or any pyarrow URI such as s3://). A segment
is written atomically (it appears whole under its name or not at all) before the request is acknowledged, so an
acknowledged event survives any replica or head restart."""

from __future__ import annotations

import time
import uuid

import pandas as pd
import pyarrow as pa

from ray_longtail.artifacts import RunStore

EVENTS = "events"
EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase")
EVENT_SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("event", pa.string()),
                          ("timestamp", pa.int64()), ("request_id", pa.string()), ("variant", pa.string()),
                          ("position", pa.int64()), ("received", pa.int64())])


class EventLog:
    """The events store of one run: `append` a batch, `read` them all back (for reports and the next model)."""

    def __init__(self, store: RunStore):
        self.store = store

    def append(self, events: list[dict]) -> str:
        """Write one batch (dicts with the `EVENT_SCHEMA` fields; `ts` or `timestamp` missing = now) as a new
        segment; returns its name."""
        now = int(time.time())
        rows = [{"user_id": e["user_id"], "item_id": e["item_id"], "event": e["event"],
                 "timestamp": e.get("ts") if e.get("ts") is not None else e.get("timestamp", now),
                 "request_id": e.get("request_id"), "variant": e.get("variant"), "position": e.get("position"),
                 "received": now} for e in events]
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        self.store.write_table(f"{EVENTS}/{name}", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))
        return name

    def segments(self) -> list[str]:
        return self.store.listing(EVENTS, ".parquet")

    def read(self) -> pd.DataFrame:
        """Every logged event, in the order the segments were written."""
        tables = [self.store.read_arrow(f"{EVENTS}/{name}") for name in self.segments()]
        return pa.concat_tables([EVENT_SCHEMA.empty_table(), *tables]).to_pandas()

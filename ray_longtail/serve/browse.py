"""What the browser page (`GET /ui`) shows besides the recommendation endpoints: users to pick from, a user's
history, and the tail-heavy embedding clusters with example items. Plain functions over a `Recommender` and its
run (no Serve, no HTTP); items come back in the shape of every other answer (`Item`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from ray_longtail.data import schema as S


def example_users(rec, n: int = 30) -> list[dict[str, Any]]:
    """The `n` most active history users (most interactions first, ties by id): people with a history to look at."""
    counts = np.asarray(rec.run.phase.history.binary.getnnz(axis=1))
    order = np.lexsort((rec.run.phase.history.user_ids.astype(str), -counts))[:n]
    return [{"user_id": str(rec.run.phase.history.user_ids[u]), "interactions": int(counts[u])} for u in order]


def user_history(rec, user_id: str, limit: int = 50) -> dict[str, Any] | None:
    """A known user's distinct history items, most recent first (None for an unknown user). `score` is the
    number of interactions with the item; `reason` says how many and when the last one was."""
    user = rec.user_of.get(str(user_id), -1)
    if user < 0:
        return None
    history = rec.run.phase.history
    last = history.last_ts[user]
    counts = dict(zip(history.counts[user].indices.tolist(), history.counts[user].data.tolist(), strict=True))
    order = np.argsort(-last.data, kind="stable")[:limit]
    items = []
    for item, ts in zip(last.indices[order], last.data[order], strict=True):
        when = datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d")
        n = int(counts.get(int(item), 1))
        items.append(rec.items.item(int(item), float(n), "history", f"{n}x, last on {when}"))
    return {"user_id": str(user_id), "interactions": int(last.nnz), "items": items}


def tail_clusters(rec, limit: int = 12, examples: int = 5) -> list[dict[str, Any]]:
    """The embedding clusters with the largest tail share (then the largest), each with its label and its most
    popular non-head items as examples."""
    clusters = rec.store.read_table("clusters.parquet")
    segments = rec.store.read_table("item_segments.parquet")
    position = segments[S.ITEM_ID].map(rec.catalog_items.position_of)
    segments = segments.assign(position=position)[position.notna() & (segments[S.SEGMENT] != S.HEAD)]
    top = clusters.sort_values(["tail_share", "size", S.CLUSTER], ascending=[False, False, True]).head(limit)
    out = []
    for row in top.itertuples(index=False):
        members = segments[segments[S.CLUSTER] == row.cluster].sort_values(
            [S.POPULARITY, S.ITEM_ID], ascending=[False, True]).head(examples)
        items = [rec.items.item(int(p), float(pop), "cluster", f"cluster {row.cluster}: {row.label}")
                 for p, pop in zip(members["position"], members[S.POPULARITY], strict=True)]
        out.append({"cluster": int(row.cluster), "label": str(row.label), "size": int(row.size),
                    "tail_share": float(row.tail_share), "items": items})
    return out


"""Offline replay of a run's test window as live traffic, to exercise the online loop end to end.

Every evaluated test user (a history user with a new item in the test window, the users `metrics.json` is computed
over) asks the running app for `POST /recommend`; the k items shown are logged as impressions (`POST /events`
with the answer's request_id, variant and positions), a shown item the user really interacted with in the test
window as a click, and as a purchase too when that interaction was one. Events carry the time of the user's first
test interaction. Because the app serves the same lists as the batch job, a variant's share of users with a click
equals the offline HitRate@k of its lists over its users, and its CTR their Precision@k: `ab-report` can then be
read against the offline metrics of the same lists.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail.artifacts import open_run_store
from ray_longtail.data import schema as S
from ray_longtail.errors import UserError
from ray_longtail.progress import Progress
from ray_longtail.serve.schemas import MAX_ITEMS_PER_REQUEST

log = logging.getLogger(__name__)


def evaluated_test_rows(run: str) -> pd.DataFrame:
    """The evaluated users' test interactions (user_id, item_id, timestamp, event): the users of
    `recommendations.parquet`, their test-window rows."""
    store = open_run_store(run)
    for needed in ("recommendations.parquet", "split/test.parquet"):
        if not store.exists(needed):
            raise UserError(f"run {run} has no {needed}: finish it with `ray-longtail run`")
    users = store.read_table("recommendations.parquet", columns=[S.USER_ID])[S.USER_ID].unique()
    test = store.read_table("split/test.parquet")
    test = test[test[S.USER_ID].isin(users)]
    event = test[S.EVENT] if S.EVENT in test.columns else pd.Series("interaction", index=test.index)
    return test.assign(**{S.EVENT: event.astype(str)})[[S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.EVENT]]


def user_events(user: str, answer: dict[str, Any], truth: pd.DataFrame) -> list[dict[str, Any]]:
    """The events one user's answer produces: impressions of every shown item, a click (and a purchase when the
    test interaction was one) for each shown item among `truth` (that user's test rows)."""
    ts = int(truth[S.TIMESTAMP].min())
    bought = set(truth.loc[truth[S.EVENT] == S.PURCHASE, S.ITEM_ID].astype(str))
    touched = set(truth[S.ITEM_ID].astype(str))
    common = {"user_id": user, "request_id": answer["request_id"], "variant": answer["variant"], "ts": ts}
    events = []
    for position, item in enumerate(answer["items"]):
        shown = {**common, "item_id": item["item_id"], "position": position}
        events.append({**shown, "event": "impression"})
        if item["item_id"] in touched:
            events.append({**shown, "event": "click"})
        if item["item_id"] in bought:
            events.append({**shown, "event": "purchase"})
    return events


def replay(run: str, url: str, k: int = 10, token: str | None = None, max_users: int | None = None,
           concurrency: int = 4, seed: int = 0, timeout_s: float = 30.0) -> dict[str, Any]:
    """Replay `run`'s test window against the app at `url` (module docstring); `max_users`: a seeded sample.
    Returns counts (users, requests, events, failed requests) and the seconds it took."""
    import httpx

    window = evaluated_test_rows(run)
    users = np.sort(window[S.USER_ID].astype(str).unique())
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    by_user = {str(u): rows for u, rows in window.groupby(window[S.USER_ID].astype(str))}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    start, progress = time.perf_counter(), Progress("replay", len(users), "users")
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers) as client:

        def one(user: str) -> list[dict[str, Any]] | None:
            response = client.post("/recommend", json={"user_id": user, "k": k})
            progress.advance(1)
            if response.status_code != 200:
                log.warning("/recommend for %s answered %s: %s", user, response.status_code, response.text[:200])
                return None
            return user_events(user, response.json(), by_user[user])

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            answers = list(pool.map(one, [str(u) for u in users]))
        events = [e for answer in answers if answer for e in answer]
        posted = post_events(client, events)
    counts = pd.Series([e["event"] for e in events], dtype=object).value_counts().to_dict()
    return {"users": int(len(users)), "failed_requests": sum(a is None for a in answers), "events": len(events),
            **{str(name): int(n) for name, n in counts.items()}, "events_written": posted,
            "seconds": round(time.perf_counter() - start, 1)}


def post_events(client, events: list[dict[str, Any]]) -> int:
    """POST /events in batches of at most MAX_ITEMS_PER_REQUEST; raises UserError on a refused batch (nothing of
    it was written)."""
    written = 0
    for begin in range(0, len(events), MAX_ITEMS_PER_REQUEST):
        batch = events[begin: begin + MAX_ITEMS_PER_REQUEST]
        response = client.post("/events", json={"events": batch})
        if response.status_code != 200:
            raise UserError(f"POST /events answered {response.status_code}: {response.text[:300]} (a token? "
                            "--token-env names the variable holding it)")
        written += int(response.json()["accepted"])
    return written

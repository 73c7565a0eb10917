"""The online loop back into the model: events logged by `POST /events` become interactions.

- `ray-longtail run --events STORE` (`with_feedback`, in the ingest stage): the store's events of
  `feedback.event_types` join the shop's interactions before the temporal split, so the next model is trained,
  tuned and evaluated on them like on any other row.
- `ray-longtail refresh --run DIR --events STORE` (`refresh_run`): a new run that serves the old model on a longer
  history, without retraining the ranker or the encoder. The events go into the eval phase's history
  (`feedback/interactions.parquet`, read by `phase.load_phase`), which recomputes popularity and segments (a cold
  item with new purchases becomes warm), user profiles and the features' statistics; the candidate sources are
  refitted on that history (ItemKNN neighbours of the new co-interactions, EASE, ALS, popularity) and the serving
  lists are recomputed. The Serve app picks the new run up with a redeploy (`kill -HUP` of `ray-longtail serve`,
  or `serve deploy` with the new `args.run`), which replaces replicas one at a time.

Event user ids are used as given: with `privacy.pseudonymize_users` the app already saw pseudonyms.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from ray_longtail.artifacts import (
    EXPOSURE_PATHS,
    FEEDBACK,
    MANIFEST,
    SERVING_LISTS,
    SOURCES_ARTIFACT,
    RunStore,
    file_fingerprint,
    open_run_store,
    split_uri,
)
from ray_longtail.config import Config, DataConfig, load_config
from ray_longtail.data import schema as S
from ray_longtail.data.ingest import clean_interactions
from ray_longtail.errors import UserError
from ray_longtail.serve.events import open_events

log = logging.getLogger(__name__)
REFRESHED = {"metrics.json", SOURCES_ARTIFACT, SERVING_LISTS, EXPOSURE_PATHS, "item_segments.parquet",  # rewritten
             FEEDBACK}
NOT_COPIED = ("events/",)  # a refreshed run starts its own events store


def fold_events(events: pd.DataFrame, catalog_ids: pd.Index, data: DataConfig, event_types: list[str],
                source: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Logged events (EVENT_SCHEMA frame) of `event_types` -> cleaned interaction rows (user_id, item_id,
    timestamp, event, value 1.0), validated like the shop's own file; events on items outside the catalog (items
    added at serving time) are dropped and counted. Returns (rows, report)."""
    chosen = events[events[S.EVENT].isin(event_types)]
    rows = pd.DataFrame({S.USER_ID: chosen[S.USER_ID].astype(str), S.ITEM_ID: chosen[S.ITEM_ID].astype(str),
                         S.TIMESTAMP: chosen[S.TIMESTAMP].astype("int64"), S.EVENT: chosen[S.EVENT].astype(str),
                         S.VALUE: 1.0})
    if rows.empty:
        return rows, {"store": source, "events": int(len(events)), "of_types": 0, "folded": 0, "drops": {}}
    relaxed = dataclasses.replace(data, events=[], max_unknown_item_share=1.0, sample_users_fraction=1.0)
    cleaned, report = clean_interactions(rows, catalog_ids, source, relaxed)
    return cleaned, {"store": source, "events": int(len(events)), "of_types": int(len(rows)),
                     "event_types": list(event_types), "folded": int(len(cleaned)), "drops": report.drops}


def with_feedback(catalog: pd.DataFrame, interactions: pd.DataFrame,
                  config: Config) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The interactions with the `feedback.events` store's events folded in (sorted like ingest sorts), and the
    fold's report; unchanged (and None) when no store is configured."""
    if not config.feedback.events:
        return interactions, None
    store = open_events(config.feedback.events)
    folded, report = fold_events(store.read(), pd.Index(catalog[S.ITEM_ID]), config.data,
                                 config.feedback.event_types, store.uri)
    merged = pd.concat([interactions, folded], ignore_index=True)
    merged = merged.sort_values([S.TIMESTAMP, S.USER_ID, S.ITEM_ID], kind="stable").reset_index(drop=True)
    log.info("folded %d feedback events from %s into the interactions", len(folded), store.uri)
    return merged, report | {"fingerprint": file_fingerprint(store.uri)["sha256_sampled"]}


def copy_run(source: RunStore, target: RunStore, skip: set[str]) -> int:
    """Copy every file of `source` into `target` except the names in `skip` and under NOT_COPIED; returns the
    number of files copied."""
    infos = source.fs.get_file_info(pafs.FileSelector(source.root, recursive=True))
    copied = 0
    for info in infos:
        name = info.path[len(source.root) + 1:]
        if info.type != pafs.FileType.File or name in skip or name.startswith(NOT_COPIED):
            continue
        parent = target.path(name).rsplit("/", 1)[0]
        target.fs.create_dir(parent, recursive=True)
        pafs.copy_files(info.path, target.path(name), source_filesystem=source.fs, destination_filesystem=target.fs)
        copied += 1
    return copied


def refresh_run(run: str, events: str, out: str | None = None,
                event_types: list[str] | None = None) -> tuple[RunStore, dict[str, Any]]:
    """A new run next to `run` (or at `out`) serving `run`'s model over its history plus the events of `events`
    (module docstring). Returns (the new run's store, the summary also written to its metrics.json `refresh`)."""
    from ray_longtail.pipeline import RunContext
    from ray_longtail.runtime import ray_session

    start = time.perf_counter()
    base = open_run_store(run)
    if not base.exists("metrics.json"):
        raise UserError(f"run {run} is not finished (no metrics.json): finish it with `ray-longtail run`")
    overrides = [f"feedback.event_types={','.join(event_types)}"] if event_types else None
    config = load_config(extra=base.manifest()["config"], overrides=overrides)
    store = open_events(events)
    catalog_ids = pd.Index(base.read_table("catalog.parquet", columns=[S.ITEM_ID])[S.ITEM_ID])
    folded, report = fold_events(store.read(), catalog_ids, config.data, config.feedback.event_types, store.uri)
    if base.exists(FEEDBACK):  # refreshing a refreshed run keeps its earlier feedback (exact repeats once)
        folded = pd.concat([base.read_table(FEEDBACK), folded], ignore_index=True).drop_duplicates()
    if folded.empty:
        raise UserError(f"{store.uri} has no {'/'.join(config.feedback.event_types)} events on catalog items "
                        f"({report}): nothing to refresh")
    target = _new_store(base, out)
    copied = copy_run(base, target, REFRESHED)
    target.write_table(FEEDBACK, folded)
    with ray_session(config.ray):  # the serving lists of a large run are scored on Ray Data
        refitted = refit(RunContext(config, target), base)
    summary = refitted | {
        "from_run": base.uri, "events": report, "feedback_rows": int(len(folded)), "files_copied": copied}
    target.update_manifest(refreshed_from=base.uri, feedback={"uri": store.uri,
                                                              **file_fingerprint(store.uri)})
    summary["seconds"] = round(time.perf_counter() - start, 1)
    metrics = base.read_json("metrics.json") | {"refresh": summary}
    target.write_json("metrics.json", metrics)  # last: it marks the run finished
    return target, summary


def refit(ctx, base: RunStore) -> dict[str, Any]:
    """What the refreshed eval history changes: the sources, the segments (clusters kept) and the serving lists."""
    from ray_longtail import ranking_stages, stages
    from ray_longtail.sources.registry import fit_sources, make_sources

    config, phase = ctx.config, ctx.phase("eval")
    sources = fit_sources(make_sources(config.retrieve, stages.fitted_source_names(config), config.seed),
                          phase.history, phase.context)
    ctx.store.write_pickle(SOURCES_ARTIFACT, sources)
    old = base.read_table("item_segments.parquet")  # clusters and enrichment stay; popularity and segments move
    ctx.store.write_table("item_segments.parquet", old.assign(**{S.POPULARITY: phase.segments[S.POPULARITY].to_numpy(),
                                                                 S.SEGMENT: phase.segments[S.SEGMENT].to_numpy()}))
    warm = old[S.ITEM_ID][(old[S.SEGMENT] == S.COLD).to_numpy() & (phase.segments[S.SEGMENT] != S.COLD).to_numpy()]
    serving = ranking_stages.stage_serving(ctx)
    counts = phase.segments[S.SEGMENT].value_counts()
    return {"history_users": int(phase.history.n_users), "segments": {k: int(v) for k, v in counts.items()},
            "became_warm": int(len(warm)), "became_warm_examples": warm.astype(str).head(20).tolist(),
            "serving_users": serving["users"]}


def _new_store(base: RunStore, out: str | None) -> RunStore:
    """`out` (a new folder or URI), else `<artifacts>/<run_id>-refresh-<UTC time>` next to the base run."""
    if out:
        artifacts, run_id = split_uri(out)
    else:
        artifacts, run_id = base.artifacts, f"{base.run_id}-refresh-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    store = RunStore(artifacts, run_id)
    if store.exists(MANIFEST):
        raise UserError(f"{store.uri} is already a run: give --out a new folder")
    return store

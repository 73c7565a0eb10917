"""The pipeline: stages in order, each reading only earlier stages' artifacts, skipped when its outputs exist.

A stage is a function `(RunContext) -> summary dict` plus the artifact names it writes. `run_stages` runs
the requested stages (and whatever they need that is missing), records timings in `manifest.json`, and
returns the run's store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail import __version__
from ray_longtail.artifacts import RunStore, file_fingerprint
from ray_longtail.config import Config, config_to_dict
from ray_longtail.data import schema as S
from ray_longtail.data.ingest import bundled_paths, ingest
from ray_longtail.data.split import Cuts, compute_cuts, temporal_split
from ray_longtail.embed import table_to_vectors
from ray_longtail.errors import UserError
from ray_longtail.phase import Phase, build_phase
from ray_longtail.runtime import ray_session

log = logging.getLogger(__name__)


def input_paths(config: Config) -> tuple[str, str]:
    """(items, interactions) URIs: both given, or both bundled."""
    items, interactions = config.data.items, config.data.interactions
    if (items is None) != (interactions is None):
        raise UserError("give both --items and --interactions (or neither, for the bundled dataset)")
    return (items, interactions) if items else bundled_paths()


def make_run_id(config: Config) -> str:
    """`<dataset>-<hash>`: the same inputs and config give the same run id, so reruns skip finished stages."""
    if config.run_id:
        return config.run_id
    items, interactions = input_paths(config)
    resolved = config_to_dict(config)
    for key in ("artifacts", "run_id", "ray"):  # where and how it runs does not change the results
        resolved.pop(key)
    fingerprints = [file_fingerprint(items)["sha256_sampled"], file_fingerprint(interactions)["sha256_sampled"]]
    digest = hashlib.sha256(json.dumps([resolved, fingerprints], sort_keys=True).encode()).hexdigest()[:8]
    name = Path(items.rstrip("/")).parent.name or "run"
    return f"{name}-{digest}"


@dataclass
class RunContext:
    """What a stage sees: the config, the run's store and a cache of artifacts already read."""

    config: Config
    store: RunStore
    cache: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.cache:
            self.cache[name] = self.store.read_table(name)
        return self.cache[name]

    def json(self, name: str) -> Any:
        if name not in self.cache:
            self.cache[name] = self.store.read_json(name)
        return self.cache[name]

    def cuts(self) -> Cuts:
        return Cuts(**self.json("split/cuts.json"))

    def catalog_ids(self) -> np.ndarray:
        """The catalog's item ids in catalog order (read without the text columns)."""
        if "catalog_ids" not in self.cache:
            self.cache["catalog_ids"] = self.store.read_table("catalog.parquet", columns=[S.ITEM_ID])[S.ITEM_ID]\
                .to_numpy()
        return self.cache["catalog_ids"]

    def vectors(self) -> np.ndarray:
        """Item embeddings (n_items, dim) aligned to the catalog order."""
        if "vectors" not in self.cache:
            ids, vectors = table_to_vectors(self.store.read_arrow("item_embeddings.parquet"))
            position = pd.Index(ids).get_indexer(self.catalog_ids())
            if (position < 0).any():
                raise UserError("item_embeddings.parquet does not cover the catalog; rerun embed with --force")
            in_order = len(position) == len(ids) and bool((position == np.arange(len(ids))).all())
            self.cache["vectors"] = vectors if in_order else vectors[position]
        return self.cache["vectors"]

    def clusters(self) -> np.ndarray:
        segments = self.table("item_segments.parquet")
        return segments[S.CLUSTER].to_numpy()

    def phase(self, name: str) -> Phase:
        """The "fit" (train -> valid) or "eval" (train+valid -> test) phase, built once per process."""
        key = f"phase:{name}"
        if key not in self.cache:
            cuts = self.cuts()
            read = self.store.read_table  # not cached: only the phase's matrices are kept
            if name == "fit":
                history, labels = read("split/train.parquet"), read("split/valid.parquet")
                end = cuts.cut_valid
            else:
                history = pd.concat([read("split/train.parquet"), read("split/valid.parquet")], ignore_index=True)
                labels, end = read("split/test.parquet"), cuts.cut_test
            catalog_ids = self.catalog_ids()
            has_clusters = self.store.exists("item_segments.parquet")
            clusters = self.clusters() if has_clusters else np.zeros(len(catalog_ids), dtype=np.int64)
            self.cache[key] = build_phase(name, history, labels, end, catalog_ids, self.vectors(), clusters,
                                          self.config)
        return self.cache[key]

    def forget_phases(self) -> None:
        """Drop cached phases (after discover writes the clusters they depend on)."""
        for key in [k for k in self.cache if k.startswith("phase:")]:
            del self.cache[key]

    def ids_frame(self, phase_name: str, long: pd.DataFrame) -> pd.DataFrame:
        """A (user, item) index frame with user_id / item_id strings instead, for artifacts."""
        history = self.phase(phase_name).history
        out = long.drop(columns=["user", "item"])
        out.insert(0, S.ITEM_ID, history.item_ids[long["item"].to_numpy()].astype(str))
        out.insert(0, S.USER_ID, history.user_ids[long["user"].to_numpy()].astype(str))
        return out

    def candidates(self, phase_name: str) -> pd.DataFrame:
        """Long candidate frame (user, item, source, score, rank) of a phase, as indices."""
        from ray_longtail.stages import CANDIDATES

        artifact = CANDIDATES[phase_name]
        if artifact not in self.cache:
            frame = self.table(artifact)
            history = self.phase(phase_name).history
            user = history.user_index(frame[S.USER_ID].to_numpy())
            item = pd.Index(history.item_ids).get_indexer(frame[S.ITEM_ID])
            self.cache[artifact] = frame.drop(columns=[S.USER_ID, S.ITEM_ID]).assign(user=user, item=item)
        return self.cache[artifact]


@dataclass(frozen=True)
class Stage:
    name: str
    outputs: tuple[str, ...]
    run: Callable[[RunContext], dict[str, Any]]
    needs: tuple[str, ...] = ()
    uses_ray: bool = False


def stage_ingest(ctx: RunContext) -> dict[str, Any]:
    items, interactions = input_paths(ctx.config)
    catalog, events, report = ingest(items, interactions, ctx.config.data, ctx.config.privacy)
    ctx.store.write_table("catalog.parquet", catalog)
    ctx.store.write_table("interactions.parquet", events)
    ctx.store.write_json("ingest_report.json", report)
    ctx.store.update_manifest(inputs={"items": file_fingerprint(items), "interactions": file_fingerprint(interactions)})
    return {"catalog": len(catalog), "interactions": len(events), "drops": report["interactions"]["drops"]}


def stage_split(ctx: RunContext) -> dict[str, Any]:
    events = ctx.table("interactions.parquet")
    cuts = compute_cuts(events[S.TIMESTAMP], ctx.config.split)
    parts = temporal_split(events, cuts)
    for name, frame in parts.items():
        ctx.store.write_table(f"split/{name}.parquet", frame)
    ctx.store.write_json("split/cuts.json", cuts.__dict__)
    return {name: len(frame) for name, frame in parts.items()} | cuts.__dict__


def stage_embed(ctx: RunContext) -> dict[str, Any]:
    from ray_longtail.embed import embed_items

    catalog = ctx.table("catalog.parquet")
    start = time.perf_counter()
    table = embed_items(catalog, ctx.config.embed)
    seconds = time.perf_counter() - start
    ctx.store.write_table("item_embeddings.parquet", table)
    return {"items": table.num_rows, "dim": table.column(S.VECTOR).type.list_size,
            "items_per_s": round(table.num_rows / seconds, 1)}


STAGES: list[Stage] = [
    Stage("ingest", ("catalog.parquet", "interactions.parquet", "ingest_report.json"), stage_ingest),
    Stage("split", ("split/train.parquet", "split/valid.parquet", "split/test.parquet", "split/cuts.json"),
          stage_split, needs=("ingest",)),
    Stage("embed", ("item_embeddings.parquet",), stage_embed, needs=("ingest",), uses_ray=True),
]


def _later_stages() -> list[Stage]:
    from ray_longtail import stages

    return [
        Stage("discover", ("item_segments.parquet", "clusters.parquet"), stages.stage_discover,
              needs=("split", "embed")),
        Stage("profile", ("user_profiles.parquet",), stages.stage_profile, needs=("discover",)),
        Stage("retrieve", (*stages.CANDIDATES.values(), stages.SOURCES_ARTIFACT), stages.stage_retrieve,
              needs=("discover",),
              uses_ray=True),
        Stage("features", (*stages.FEATURES.values(), "feature_names.json"), stages.stage_features,
              needs=("retrieve",), uses_ray=True),
        Stage("rank", ("ranker/_SUCCESS", "ranker/selection.json"), stages.stage_rank, needs=("features",),
              uses_ray=True),
        Stage("evaluate", ("metrics.json", "recommendations.parquet", "report.md"), stages.stage_evaluate,
              needs=("features", "rank"), uses_ray=True),
    ]


def all_stages() -> list[Stage]:
    return STAGES + _later_stages()


def stage_names() -> list[str]:
    return [s.name for s in all_stages()]


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"ray_longtail": __version__, "python": platform.python_version()}
    for package in ("ray", "torch", "transformers", "xgboost", "scikit-learn", "pandas", "pyarrow", "implicit"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    return out


def open_run(config: Config) -> RunStore:
    store = RunStore(config.artifacts, make_run_id(config))
    manifest = store.manifest()
    resolved = config_to_dict(config)
    if manifest.get("config") and manifest["config"] != resolved:
        log.warning("run %s exists with a different config; finished stages are kept (use --force to redo)",
                    store.run_id)
    store.update_manifest(run_id=store.run_id, config=resolved, versions=_versions(),
                          created=manifest.get("created") or datetime.now(timezone.utc).isoformat())
    return store


def run_stages(config: Config, until: str | None = None, only: list[str] | None = None,
               force: bool = False) -> RunStore:
    """Run the pipeline up to and including `until` (all stages when None), or just `only` (plus missing needs).

    Stages whose outputs all exist are skipped unless `force` (which then applies to the selected stages only)
    or a stage they need was recomputed in this call.
    """
    names = stage_names()
    if until is not None and until not in names:
        raise UserError(f"unknown stage {until!r}; stages: {', '.join(names)}")
    selected = only or (names[: names.index(until) + 1] if until else names)
    store = open_run(config)
    ctx = RunContext(config, store)
    by_name = {s.name: s for s in all_stages()}
    done: set[str] = set()
    ran: set[str] = set()  # stages recomputed in this call: their dependants are recomputed too
    resources = ExitStack()
    ray_entered: list[bool] = []

    def execute(stage: Stage, forced: bool) -> None:
        if stage.name in done:
            return
        for need in stage.needs:
            execute(by_name[need], forced=False)
        forced = forced or any(need in ran for need in stage.needs)
        if not forced and all(store.exists(o) for o in stage.outputs):
            log.info("stage %-9s skipped (outputs exist)", stage.name)
            done.add(stage.name)
            return
        log.info("stage %-9s running", stage.name)
        if stage.uses_ray and not ray_entered:
            resources.enter_context(ray_session(config.ray))
            ray_entered.append(True)
        start = time.perf_counter()
        summary = stage.run(ctx)
        seconds = round(time.perf_counter() - start, 2)
        log.info("stage %-9s done in %.1fs %s", stage.name, seconds, summary)
        store.update_manifest(stages={stage.name: {"seconds": seconds, "summary": summary,
                                                    "finished": datetime.now(timezone.utc).isoformat()}})
        done.add(stage.name)
        ran.add(stage.name)

    with resources:
        for name in selected:
            execute(by_name[name], forced=force)
    return store


def print_summary(store: RunStore, command: str) -> None:
    """Print what a person wants to see after a command: stage timings, and the metrics table if there is one."""
    manifest = store.manifest()
    for name, info in manifest.get("stages", {}).items():
        print(f"{name:<10} {info['seconds']:>8.1f}s  {json.dumps(info['summary'], default=str)[:160]}")
    if command in ("discover", "run") and store.exists("clusters.parquet"):
        from ray_longtail.discover import discovery_summary

        print("\nLargest tail-heavy clusters (long-tail discovery):")
        print(discovery_summary(store.read_table("clusters.parquet")))
    if command in ("evaluate", "run") and store.exists("metrics.json"):
        from ray_longtail.evaluate import metrics_table

        metrics = store.read_json("metrics.json")
        print(f"\nTest window: {metrics['info']['eval_users']} users, catalog {metrics['info']['catalog']} "
              f"items (head {metrics['info']['head']}, tail {metrics['info']['tail']}, cold {metrics['info']['cold']})")
        for k in metric_cutoffs(metrics):
            print(metrics_table(metrics["systems"], k=k))


def metric_cutoffs(metrics: dict) -> list[int]:
    """The cut-offs present in a metrics.json (e.g. [10, 20])."""
    first = next(iter(metrics["systems"].values()))
    return sorted({int(key.split("@")[1]) for key in first if "@" in key})

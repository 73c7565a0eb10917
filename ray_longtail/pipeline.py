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

import pandas as pd

from ray_longtail import __version__
from ray_longtail.artifacts import RunStore, file_fingerprint
from ray_longtail.config import Config, config_to_dict
from ray_longtail.data import schema as S
from ray_longtail.data.ingest import bundled_paths, ingest
from ray_longtail.data.split import Cuts, compute_cuts, temporal_split
from ray_longtail.errors import UserError
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
    resolved.pop("artifacts")
    resolved.pop("run_id")
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


def register(stage: Stage) -> None:
    """Add a stage at the end of the pipeline (later modules extend the pipeline this way)."""
    STAGES[:] = [s for s in STAGES if s.name != stage.name] + [stage]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


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

    Stages whose outputs all exist are skipped unless `force` (which then applies to the selected stages only).
    """
    names = stage_names()
    if until is not None and until not in names:
        raise UserError(f"unknown stage {until!r}; stages: {', '.join(names)}")
    selected = only or (names[: names.index(until) + 1] if until else names)
    store = open_run(config)
    ctx = RunContext(config, store)
    by_name = {s.name: s for s in STAGES}
    done: set[str] = set()
    resources = ExitStack()
    ray_entered: list[bool] = []

    def execute(stage: Stage, forced: bool) -> None:
        if stage.name in done:
            return
        for need in stage.needs:
            execute(by_name[need], forced=False)
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

    with resources:
        for name in selected:
            execute(by_name[name], forced=force)
    return store


def print_summary(store: RunStore, command: str) -> None:
    """Print what a person wants to see after a command: stage timings, and the metrics table if there is one."""
    manifest = store.manifest()
    for name, info in manifest.get("stages", {}).items():
        print(f"{name:<10} {info['seconds']:>8.1f}s  {json.dumps(info['summary'], default=str)[:160]}")

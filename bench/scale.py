"""Scale benchmark: the whole pipeline on synthetic shops of growing size, stage by stage.

For each size (items; interactions ~10x items) it generates a shop with `ray_longtail.data.synthetic` and runs
every stage in its own process on a fresh local Ray (as one `ray job submit` per stage would), so no stage
inherits another's heap. It records the stage's wall time (Ray start-up excluded) and the peak memory used on
the machine while the stage's process ran (all processes, Ray workers and the object store included, minus the
level before), appends one JSON line per size to
`--results`, and prints a table of every size in that file with the fitted growth exponent per stage (slope of
log time vs log items).

    python bench/scale.py --sizes 10000 100000 1000000 --results bench/scale_results.jsonl

Embedding uses the weight-free `hashing` encoder by default here: MiniLM on 2 CPU cores embeds ~150 items/s
(10^6 items = ~2 h), see bench/embed_throughput.py for the transformer's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

import numpy as np
import psutil


class PeakMemory:
    """Samples machine-wide used memory every 0.2 s; `peak_gib` = max used minus the level at start."""

    def __init__(self) -> None:
        self.start = psutil.virtual_memory().used
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, psutil.virtual_memory().used)
            time.sleep(0.2)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gib(self) -> float:
        return (self.peak - self.start) / 2**30


def shop_config(n_items: int, overrides: list[str], workdir: str):
    from ray_longtail.config import load_config

    shop = os.path.join(workdir, f"shop_{n_items}")
    data = {"items": os.path.join(shop, "items.parquet"), "interactions": os.path.join(shop, "interactions.parquet")}
    return load_config(overrides=overrides, extra={
        "data": data,
        "artifacts": os.path.join(workdir, "artifacts"), "run_id": f"scale_{n_items}"})


def child_task(task: str, n_items: int, overrides: list[str], workdir: str) -> float:
    """One step in this (child) process: "generate" the shop, or run one pipeline stage on a fresh local Ray.
    Returns the step's seconds (Ray start-up and imports excluded)."""
    if task == "generate":
        from ray_longtail.data.synthetic import write_shop

        start = time.perf_counter()
        write_shop(os.path.join(workdir, f"shop_{n_items}"), n_items=n_items, seed=0)
        return time.perf_counter() - start
    import ray

    from ray_longtail import pipeline

    config = shop_config(n_items, overrides, workdir)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        start = time.perf_counter()
        pipeline.run_stages(config, only=[task])
        return time.perf_counter() - start
    finally:
        ray.shutdown()


def run_size(n_items: int, overrides: list[str], workdir: str) -> dict[str, tuple[float, float]]:
    """Generate a shop of `n_items` and run every stage on it, each step in its own process (as `ray job submit`
    of one stage would): {step: (seconds, peak GiB)}."""
    from ray_longtail import pipeline

    results = {}
    for task in ["generate", *pipeline.stage_names()]:
        command = [sys.executable, __file__, "--child", task, "--n-items", str(n_items), "--workdir", workdir,
                   *[f"--set={o}" for o in overrides]]
        with PeakMemory() as memory:
            done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
        seconds = float(done.stdout.strip().splitlines()[-1])
        results[task] = (seconds, memory.peak_gib)
        print(f"  {n_items:>8} {task:<9} {seconds:8.1f}s  peak +{memory.peak_gib:5.2f} GiB", flush=True)
    return results


def growth_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Slope of log(seconds) against log(items) (least squares)."""
    if len(sizes) < 2:
        return float("nan")
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(seconds, 1e-3)), 1)[0])


def print_table(rows: list[dict]) -> None:
    """Markdown table of the last result per size in `rows` (JSON lines of `main`)."""
    by_size = {row["n_items"]: row for row in rows}
    sizes = sorted(by_size)
    stages = list(by_size[sizes[-1]]["stages"])
    print(f"\n# Scale benchmark — {platform.node()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB")
    for n in sizes:
        info = by_size[n]
        print(f"# {n:,} items: {info['interactions']:,} interactions, {info['users']:,} users, "
              f"run {info['finished']}; overrides: {' '.join(info['overrides'])}")
    print("\n| stage | " + " | ".join(f"{n:,} items: s / peak GiB" for n in sizes) + " | growth exponent |")
    print("|" + "---|" * (len(sizes) + 2))
    for stage in [*stages, "total"]:
        if stage == "total":
            cells = [(sum(v[0] for v in by_size[n]["stages"].values()),
                      max(v[1] for v in by_size[n]["stages"].values())) for n in sizes]
        else:
            cells = [tuple(by_size[n]["stages"].get(stage, (float("nan"), float("nan")))) for n in sizes]
        exponent = growth_exponent(sizes, [c[0] for c in cells])
        print(f"| {stage} | " + " | ".join(f"{s:.1f} / {m:.2f}" for s, m in cells) + f" | {exponent:.2f} |")


def record_size(n_items: int, overrides: list[str], results_path: str) -> None:
    """Run one size and append its JSON line to `results_path`."""
    with tempfile.TemporaryDirectory(prefix="ray_longtail_scale_") as workdir:
        stages = run_size(n_items, overrides, workdir)
        import pyarrow.parquet as pq

        shop = os.path.join(workdir, f"shop_{n_items}")
        events = pq.read_table(os.path.join(shop, "interactions.parquet"), columns=["user_id"])
        row = {"n_items": n_items, "interactions": events.num_rows,
               "users": len(events.column("user_id").unique()), "overrides": overrides,
               "finished": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
               "stages": {name: [round(s, 2), round(m, 3)] for name, (s, m) in stages.items()}}
    with open(results_path, "a") as out:
        out.write(json.dumps(row) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--results", default="bench/scale_results.jsonl",
                        help="JSON lines file the sizes are appended to; the table covers every size in it")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override (default adds embed.model=hashing, eval.max_users=20000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n-items", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    if args.child:
        print(child_task(args.child, args.n_items, args.overrides, args.workdir))
        return
    overrides = ["embed.model=hashing", "eval.max_users=20000", "tune.num_samples=1", *args.overrides]
    for n_items in args.sizes:
        record_size(n_items, overrides, args.results)
    if os.path.exists(args.results):
        with open(args.results) as src:
            print_table([json.loads(line) for line in src if line.strip()])


if __name__ == "__main__":
    main()

"""Scale benchmark: the whole pipeline on synthetic shops of growing size, stage by stage.

For each size (items; interactions ~10x items) it generates a shop with `ray_longtail.data.synthetic`, runs
every stage in this process on one local Ray cluster, and records wall time and the peak memory used on the
machine during the stage (all processes, Ray workers included, minus the level before the stage). It prints a
table and the fitted growth exponent per stage (slope of log time vs log items).

    python bench/scale.py --sizes 10000 100000 1000000 --set embed.model=hashing

Embedding uses the weight-free `hashing` encoder by default here: MiniLM on 2 CPU cores embeds ~150 items/s
(10^6 items = ~2 h), see bench/embed_throughput.py for the transformer's throughput.
"""

from __future__ import annotations

import argparse
import os
import platform
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


def run_size(n_items: int, overrides: list[str], workdir: str) -> dict[str, tuple[float, float]]:
    from ray_longtail import pipeline
    from ray_longtail.config import load_config
    from ray_longtail.data.synthetic import write_shop

    start = time.perf_counter()
    items, events = write_shop(os.path.join(workdir, f"shop_{n_items}"), n_items=n_items, seed=0)
    results = {"generate": (time.perf_counter() - start, 0.0)}
    config = load_config(overrides=overrides, extra={
        "data": {"items": items, "interactions": events}, "artifacts": os.path.join(workdir, "artifacts"),
        "run_id": f"scale_{n_items}"})
    for stage in pipeline.stage_names():
        with PeakMemory() as memory:
            start = time.perf_counter()
            pipeline.run_stages(config, only=[stage])
            seconds = time.perf_counter() - start
        results[stage] = (seconds, memory.peak_gib)
        print(f"  {n_items:>8} {stage:<9} {seconds:8.1f}s  peak +{memory.peak_gib:5.2f} GiB", flush=True)
    return results


def growth_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Slope of log(seconds) against log(items) (least squares)."""
    if len(sizes) < 2:
        return float("nan")
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(seconds, 1e-3)), 1)[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override (default adds embed.model=hashing, eval.max_users=20000)")
    args = parser.parse_args(argv)
    overrides = ["embed.model=hashing", "eval.max_users=20000", "tune.num_samples=1", *args.overrides]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    import ray

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    table: dict[int, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ray_longtail_scale_") as workdir:
        for n_items in args.sizes:
            table[n_items] = run_size(n_items, overrides, workdir)
    ray.shutdown()
    stages = list(next(iter(table.values())))
    print(f"\n# Scale benchmark — {platform.node()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"# overrides: {' '.join(overrides)}\n")
    header = "| stage | " + " | ".join(f"{n:,} items: s / peak GiB" for n in table) + " | growth exponent |"
    print(header)
    print("|" + "---|" * (len(table) + 2))
    sizes = list(table)
    for stage in [*stages, "total"]:
        if stage == "total":
            cells = [(sum(v[0] for v in table[n].values()), max(v[1] for v in table[n].values())) for n in sizes]
        else:
            cells = [table[n][stage] for n in sizes]
        exponent = growth_exponent(sizes, [c[0] for c in cells])
        print(f"| {stage} | " + " | ".join(f"{s:.1f} / {m:.2f}" for s, m in cells) + f" | {exponent:.2f} |")


if __name__ == "__main__":
    main()

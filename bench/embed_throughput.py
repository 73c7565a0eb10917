"""Embedding throughput: a plain in-process TextEncoder loop against the Ray Data stage (`embed_items`).

    python bench/embed_throughput.py [--n N] [--catalog bundled|magazines] [--text-repeat T] [--repeats R]
        [--block-size B] [--batch-size S] [--configs afbc]

All configurations embed the first N rows of the bundled items parquet, or with --catalog magazines a synthetic
magazines catalog of N items whose long descriptions fill max_length (texts from `item_texts` with the default
`EmbedConfig().text_fields`) with 2 torch threads in total:

  (a)  plain, in-process   `TextEncoder(num_threads=2).encode` in this (warm) process, block by block over the same
                           length-sorted blocks that `embed_items` builds: the same batches, so the same padding
  (t)  plain, torch        (a) with `runtime="torch"` (eager PyTorch; (a) and the rest run `embed.runtime: auto`,
                           i.e. ONNX Runtime on CPU; only with --configs ...t)
  (a') plain, new process  the same in a new Python process: interpreter, imports and model load count
  (b)  ray 1 actor x 2 CPU `embed_items` (num_actors=1, cpus_per_actor=2)
  (c)  ray 2 actors x 1 CPU `embed_items` (num_actors=2, cpus_per_actor=1)
  (d)  ray 1 actor x 1 CPU  `embed_items` with EmbedConfig's default pool (only with --configs ...d)

End to end: wall time of the call; for (a) model load + encode, for (b)-(d) `embed_items` including actor start-up
and model load. `ray.init` and the session's first Ray Data execution are done once beforehand and not counted.
Steady state: from the first completed block to the last, counting the items after the first block (blocks in
flight at that moment count pro rata). Per-block times come from `TimedEmbedBatch`, a logging subclass that the
bench swaps in for `EmbedBatch`. The per-run table splits the machine's CPU time during each call into this driver,
the encoder processes (actors, or the (a') process), the rest of the bench's process tree (GCS, raylet, idle
workers) and everything else ("other load": other users of the machine and kernel threads, i.e. noise).

Runs are interleaved (a, a', b, c, a, a', b, c, ...) so that noise from other load spreads over all configurations.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

from ray_longtail import embed as embed_module
from ray_longtail.config import DataConfig, EmbedConfig
from ray_longtail.data.ingest import bundled_paths, clean_items
from ray_longtail.data.synthetic.shop import generate_shop
from ray_longtail.embed import EmbedBatch, TextEncoder, embed_items, item_texts, table_to_vectors
from ray_longtail.runtime import RAY_ENV

TIMING_ENV = "RAY_LONGTAIL_BENCH_TIMINGS"
NOISY = 0.25  # cores of other load during a run above which the summary counts it as disturbed
BENCH_ENV = {"RAY_AUTH_MODE": "disabled"} | RAY_ENV  # set before torch/transformers/ray are imported


def _thread_info() -> dict:
    import torch

    return {"pid": os.getpid(), "torch_threads": torch.get_num_threads(), "nice": os.nice(0),
            "omp": os.environ.get("OMP_NUM_THREADS")}


def _append(record: dict) -> None:
    directory = os.environ.get(TIMING_ENV)
    if directory:
        with open(Path(directory) / f"{os.getpid()}.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")


class TimedEmbedBatch(EmbedBatch):
    """`EmbedBatch` that logs its start-up and every call (wall start/end, process CPU seconds, rows)."""

    def __init__(self, *args, **kwargs):
        start = time.time()
        super().__init__(*args, **kwargs)
        self.actor = uuid.uuid4().hex[:8]
        _append({"kind": "init", "actor": self.actor, "start": start, "end": time.time()} | _thread_info())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start, cpu = time.time(), time.process_time()
        out = super().__call__(batch)
        _append({"kind": "call", "actor": self.actor, "start": start, "end": time.time(),
                 "cpu": time.process_time() - cpu, "n": len(out["row"])})
        return out


def cpu_snapshot() -> tuple[float, dict[int, tuple[int, float]]]:
    """(busy CPU seconds of the whole machine, {pid: (parent pid, CPU seconds)}) from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / tick  # all but idle and iowait
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            procs[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, IndexError, ValueError):
            continue
    return busy, procs


class CpuMonitor(threading.Thread):
    """Samples /proc every `interval` s while a configuration runs: the machine's busy CPU time and, for every
    process of this bench's tree (driver, GCS, raylet, workers, actors, the (a') process), the CPU time it used
    since the start; a process that exits counts with the last value seen (within one interval)."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.done = interval, threading.Event()
        self.busy0, self.procs0 = cpu_snapshot()
        self.busy, self.used = self.busy0, {}

    def sample(self) -> None:
        busy, procs = cpu_snapshot()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = {os.getpid()}, [os.getpid()]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in tree:
                    tree.add(child)
                    todo.append(child)
        for pid in tree:
            self.used[pid] = procs[pid][1] - self.procs0.get(pid, (0, 0.0))[1]
        self.busy = busy

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.sample()

    def stop(self) -> CpuMonitor:
        self.done.set()
        self.join()
        self.sample()
        return self


@dataclass
class Run:
    name: str
    wall: float  # end to end, seconds
    n: int
    begin: float  # wall clock when the call started
    calls: list[dict] = field(default_factory=list)  # per block: actor, start, end, cpu, n
    inits: list[dict] = field(default_factory=list)
    vectors: np.ndarray | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # CPU s during the call: driver, encoders, rest, other

    def account(self, monitor: CpuMonitor) -> None:
        """Split the machine's busy CPU time during the call: this driver; the encoder processes (the actors, or
        the (a') process: start-up, blocks and exit); the rest of this bench's process tree (GCS, raylet, Ray Data's
        helper actors, idle workers); everything else ("other": other users' processes and kernel threads)."""
        me = os.getpid()
        encoders = {i["pid"] for i in self.inits if i["pid"] != me}
        self.cpu["driver"] = monitor.used.get(me, 0.0)
        self.cpu["encoders"] = sum(cpu for pid, cpu in monitor.used.items() if pid in encoders)
        self.cpu["rest"] = sum(cpu for pid, cpu in monitor.used.items() if pid not in encoders and pid != me)
        self.cpu["other"] = max(0.0, monitor.busy - monitor.busy0 - sum(self.cpu.values()))

    HEADER = ("| # | configuration | wall s | init starts after s | ready after s | first block after s "
              "| blocks per actor | e2e items/s | steady items/s | cores used in encode | torch threads | nice "
              "| idle between blocks s | tail s | CPU s: driver | encoder processes | rest of the bench's processes "
              "| other load (cores) |\n"
              + "|---" * 18 + "|")

    def row(self, repeat: int) -> str:
        threads = "/".join(str(i["torch_threads"]) for i in self.inits)
        nice = "/".join(str(i["nice"]) for i in self.inits)
        return (f"| {repeat} | {self.name} | {self.wall:.1f} | {self.spawned:.1f} | {self.startup:.1f} "
                f"| {self.first_block:.1f} | {self.split} | {self.e2e:.0f} | {self.steady:.0f} | {self.cores:.2f} "
                f"| {threads} | {nice} | {self.gaps:.2f} | {self.tail:.2f} | {self.cpu['driver']:.1f} "
                f"| {self.cpu['encoders']:.1f} | {self.cpu['rest']:.1f} | {self.cpu['other'] / self.wall:.2f} |")

    @property
    def e2e(self) -> float:
        return self.n / self.wall

    @property
    def first_block(self) -> float:
        return min(c["end"] for c in self.calls) - self.begin

    @property
    def steady(self) -> float:
        """Items/s from the first completed block to the last; in-flight blocks count by the share done after."""
        t0 = min(c["end"] for c in self.calls)
        t1 = max(c["end"] for c in self.calls)
        items = sum(c["n"] * min(1.0, max(0.0, (c["end"] - max(c["start"], t0)) / max(c["end"] - c["start"], 1e-9)))
                    for c in self.calls)
        return items / (t1 - t0) if t1 > t0 else float("nan")

    @property
    def cores(self) -> float:
        """CPU seconds per wall second inside the encode calls: what the encoder actually got."""
        return sum(c["cpu"] for c in self.calls) / sum(c["end"] - c["start"] for c in self.calls)

    @property
    def gaps(self) -> float:
        """Seconds an actor sat between two of its blocks (per-block overhead outside EmbedBatch), summed."""
        total = 0.0
        for actor in {c["actor"] for c in self.calls}:
            mine = sorted((c for c in self.calls if c["actor"] == actor), key=lambda c: c["start"])
            total += sum(b["start"] - a["end"] for a, b in zip(mine, mine[1:], strict=False))
        return total

    @property
    def startup(self) -> float:
        """Seconds from the call to the last actor (or the in-process model) being ready."""
        return max(i["end"] for i in self.inits) - self.begin if self.inits else float("nan")

    @property
    def spawned(self) -> float:
        """Seconds from the call to the first actor's `__init__` (worker process up, class deserialised)."""
        return min(i["start"] for i in self.inits) - self.begin

    @property
    def split(self) -> str:
        """Blocks per actor."""
        counts: dict[str, int] = {}
        for call in self.calls:
            counts[call["actor"]] = counts.get(call["actor"], 0) + 1
        return "/".join(str(v) for v in sorted(counts.values(), reverse=True))

    @property
    def tail(self) -> float:
        """Seconds from the last block's end to the call returning (collection in the driver)."""
        return self.begin + self.wall - max(c["end"] for c in self.calls)


def sorted_blocks(texts: list[str], block_size: int) -> tuple[np.ndarray, list[list[str]]]:
    """The blocks `embed_items` hands to its actors: texts sorted by length (longest first), cut every block_size."""
    order = np.argsort(-np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)), kind="stable")
    ordered = [texts[i] for i in order]
    return order, [ordered[i:i + block_size] for i in range(0, len(ordered), block_size)]


def run_plain(name: str, texts: list[str], config: EmbedConfig, runtime: str = "auto") -> Run:
    """Model load + encode in this process, block by block, logging like `TimedEmbedBatch`."""
    begin, start = time.time(), time.perf_counter()
    encoder = TextEncoder(config.model, max_length=config.max_length, device="cpu", num_threads=2, runtime=runtime)
    run = Run(name, 0.0, len(texts), begin)
    run.inits.append({"start": begin, "end": time.time()} | _thread_info())
    parts = []
    order, blocks = sorted_blocks(texts, config.block_size)
    for block in blocks:
        t0, cpu = time.time(), time.process_time()
        parts.append(encoder.encode(block, batch_size=config.batch_size))
        run.calls.append({"actor": "main", "start": t0, "end": time.time(), "cpu": time.process_time() - cpu,
                          "n": len(block)})
    run.wall = time.perf_counter() - start
    run.vectors = np.empty_like(np.concatenate(parts))
    run.vectors[order] = np.concatenate(parts)
    return run


def run_fresh(name: str, args: argparse.Namespace) -> Run:
    """(a) in a new Python process: interpreter start, imports, model load and encode all count."""
    command = [sys.executable, __file__, "--child", "--block-size", str(args.block_size), "--batch-size",
               str(args.batch_size), "--catalog", args.catalog, "--text-repeat", str(args.text_repeat)]
    command += ["--n", str(args.n)] if args.n else []
    begin, start = time.time(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    run = Run(name, time.perf_counter() - start, 0, begin)
    child = json.loads(done.stdout.strip().splitlines()[-1])
    run.n, run.inits, run.calls = child["n"], child["inits"], child["calls"]
    run.inits[0]["start"] = begin  # "init starts": the moment the process was asked for
    return run


def read_timings(directory: Path) -> tuple[list[dict], list[dict]]:
    records = []
    for path in directory.glob("*.jsonl"):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        path.unlink()
    return [r for r in records if r["kind"] == "init"], [r for r in records if r["kind"] == "call"]


def run_ray(name: str, catalog: pd.DataFrame, config: EmbedConfig, timings: Path) -> Run:
    """`embed_items` with `TimedEmbedBatch` in place of `EmbedBatch`; the call's wall time is the end-to-end time."""
    import ray

    deadline = time.time() + 60  # the previous pool's actors must have released their CPUs
    while ray.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.2)
    read_timings(timings)
    begin, start = time.time(), time.perf_counter()
    with mock.patch.object(embed_module, "EmbedBatch", TimedEmbedBatch):
        table = embed_items(catalog, config)
    run = Run(name, time.perf_counter() - start, len(catalog), begin)
    run.inits, run.calls = read_timings(timings)
    run.vectors = table_to_vectors(table)[1]
    return run


def fmt_pair(values: list[float], base: list[float] | None = None, digits: int = 0) -> tuple[str, str]:
    best, median = max(values), statistics.median(values)
    text = f"{best:.{digits}f} ({median:.{digits}f})"
    if base is None:  # (a) not run
        return text, "-"
    return text, f"{best / max(base):.2f} ({median / statistics.median(base):.2f})"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 1024**2
    import ray
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} x {cpu}, {mem:.0f} GiB, {gpu}; Python {platform.python_version()}, "
            f"ray {ray.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")


CONFIGS = {  # key: (label, how, actors, CPUs per actor)
    "a": ("(a) plain, in-process", "plain", 0, 0.0),
    "t": ("(t) plain, in-process, torch runtime", "plain_torch", 0, 0.0),
    "f": ("(a') plain, new process", "fresh", 0, 0.0),
    "b": ("(b) ray 1 actor x 2 CPU", "ray", 1, 2.0),
    "c": ("(c) ray 2 actors x 1 CPU", "ray", 2, 1.0),
    "d": ("(d) ray 1 actor x 1 CPU (EmbedConfig default)", "ray", 1, 1.0),
}


def load_catalog(name: str, n: int | None, text_repeat: int = 1) -> pd.DataFrame:
    """The first n rows of the bundled catalog, or a cleaned synthetic magazines catalog of n (default 1000) items;
    each description joined with itself `text_repeat` times."""
    if name == "bundled":
        catalog = pd.read_parquet(bundled_paths()[0])
        catalog = catalog.head(n).copy() if n else catalog
    else:
        items, _ = generate_shop(n_items=n or 1000, profile="magazines")
        catalog = clean_items(items, "magazines", DataConfig())[0]
    catalog["description"] = [" ".join([text] * text_repeat) for text in catalog["description"].fillna("")]
    return catalog


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="items (first N catalog rows; default: all, or 1000 "
                                                             "synthetic magazines)")
    parser.add_argument("--catalog", choices=("bundled", "magazines"), default="bundled",
                        help="bundled (titles, mean 26 characters) or a synthetic magazines catalog (multi-paragraph "
                             "descriptions: most texts fill max_length)")
    parser.add_argument("--text-repeat", type=int, default=1,
                        help="join each description with itself this many times (longer descriptions)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration (best and median reported)")
    parser.add_argument("--block-size", type=int, default=EmbedConfig.block_size, help="rows per Ray Data block")
    parser.add_argument("--batch-size", type=int, default=EmbedConfig.batch_size, help="texts per forward pass")
    parser.add_argument("--configs", default="afbc",
                        help="which to run, in this order per repeat: " + "; ".join(
                            f"{key} = {label}" for key, (label, *_) in CONFIGS.items()) + " (default: afbc)")
    parser.add_argument("--worker-niceness", type=int, default=None,
                        help="nice value of Ray's worker processes (sets RAY_worker_niceness; Ray's default is 15)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # the (a') process
    args = parser.parse_args(argv)
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        parser.error(f"--configs: unknown {''.join(sorted(unknown))}; choose from {''.join(CONFIGS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key, value in BENCH_ENV.items():
        os.environ.setdefault(key, value)
    if args.worker_niceness is not None:
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)
    catalog = load_catalog(args.catalog, args.n, args.text_repeat)
    base = EmbedConfig(block_size=args.block_size, batch_size=args.batch_size, device="cpu")
    texts = item_texts(catalog, base.text_fields)
    if args.child:
        run = run_plain("child", texts, base)
        print(json.dumps({"n": run.n, "inits": run.inits, "calls": run.calls}))
        return 0

    lengths = np.array([len(t) for t in texts])
    print("## Embedding throughput\n")
    print(f"- machine: {machine()}")
    print(f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- items: {len(texts)} {args.catalog} catalog rows (text length mean {lengths.mean():.0f}, "
          f"max {lengths.max()} chars), {base.model}, max_length {base.max_length}, block size {base.block_size}, "
          f"batch size {base.batch_size}, repeats {args.repeats}")
    sys.stdout.flush()

    start = time.perf_counter()
    TextEncoder(base.model, max_length=base.max_length, device="cpu", num_threads=2)  # (a) runs warm
    first_load_s = time.perf_counter() - start

    import ray

    timings = Path(tempfile.mkdtemp(prefix="embed_bench_"))
    os.environ[TIMING_ENV] = str(timings)
    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2,
             log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": dict(RAY_ENV) | {TIMING_ENV: str(timings)}})  # local: never join a running one
    ray.data.DataContext.get_current().enable_progress_bars = False
    init_s = time.perf_counter() - start
    ray.data.range(8).map_batches(lambda b: b).materialize()  # Ray Data's helper actors start once per session
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    warm_s = time.perf_counter() - start - init_s

    chosen = [CONFIGS[key] for key in args.configs]
    runs: dict[str, list[Run]] = {label: [] for label, *_ in chosen}
    details = []
    try:
        for repeat in range(args.repeats):
            for label, how, actors, cpus in chosen:
                monitor = CpuMonitor()
                monitor.start()
                if how in ("plain", "plain_torch"):
                    run = run_plain(label, texts, base, "torch" if how == "plain_torch" else "auto")
                elif how == "fresh":
                    run = run_fresh(label, args)
                else:
                    config = EmbedConfig(block_size=base.block_size, batch_size=base.batch_size, num_actors=actors,
                                         cpus_per_actor=cpus, device="cpu")
                    run = run_ray(label, catalog, config, timings)
                run.account(monitor.stop())
                runs[label].append(run)
                details.append(run.row(repeat + 1))
                print(details[-1], file=sys.stderr, flush=True)
    finally:
        ray.shutdown()

    reference = runs.get(CONFIGS["a"][0])
    checked = [run for done in runs.values() for run in done if run.vectors is not None and reference]
    cosine = min((float((run.vectors * reference[0].vectors).sum(1).min()) for run in checked), default=float("nan"))
    print(f"- not counted: first model load in this process {first_load_s:.1f} s (so (a) runs warm), `ray.init` "
          f"{init_s:.1f} s, first Ray Data execution (its helper actors) {warm_s:.1f} s; Ray workers' nice value "
          f"{os.environ.get('RAY_worker_niceness', '15 (default)')}")
    print(f"- check: lowest cosine between any run's vectors and (a)'s: {cosine:.6f}\n")
    print("| configuration | end to end items/s best (median) | vs (a) | steady items/s best (median) | vs (a) "
          f"| first block after s (median) | runs with other load > {NOISY} cores |")
    print("|---|---|---|---|---|---|---|")
    for label, done in runs.items():
        e2e, e2e_ratio = fmt_pair([r.e2e for r in done], [r.e2e for r in reference] if reference else None)
        steady, steady_ratio = fmt_pair([r.steady for r in done], [r.steady for r in reference] if reference else None)
        first = statistics.median(r.first_block for r in done)
        noisy = sum(r.cpu["other"] / r.wall > NOISY for r in done)
        print(f"| {label} | {e2e} | {e2e_ratio} | {steady} | {steady_ratio} | {first:.1f} | {noisy} of {len(done)} |")
    print("\nRatios: best/best (median/median). Per run:\n")
    print(Run.HEADER)
    print("\n".join(details))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

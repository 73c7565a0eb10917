"""Serving load: closed-loop clients at several concurrencies and an open-loop offered rate against the Ray Serve
app, and the same requests answered by the in-process `Recommender` (no HTTP, no Serve: the difference is Serve's
overhead).

    python bench/serve_load.py --run /tmp/serve_art/latest [--url http://127.0.0.1:8000]
        [--concurrency 1 8 32] [--duration 30 30 60 | --requests 400] [--rate 100 --rate-duration 60]
        [--mix recommend=1] [--k 20]

Without --url the bench starts the app itself on its own local Ray (`ray.init(address="local", num_cpus=2)`,
127.0.0.1, a free port) and stops it at the end; with --url it only sends requests (127.0.0.1 only).

Requests are drawn (seeded) from the run: `recommend` = known users of recommendations.parquet with k=--k and the
run's tail_weight; `cold` = unknown users; `similar` = catalog item ids; `search` = catalog titles as queries.
Closed loop: C threads, each with its own keep-alive connection, send the next request as soon as the previous
answer arrives. Open loop: requests are sent at Poisson arrival times of the offered rate whatever the answers do,
and latency counts from the scheduled send time (queueing included, no coordinated omission).

Before every row each distinct user is requested once (warm-up) so that rows measure the steady state: the
Recommender caches the scored candidates of a known user and a request then only pays for re-ranking at its
tail_weight. The first warm-up is printed as its own row (first request per user: candidates + features + ranker).
Order: warm-up, the open-loop row (on the start-up replica set), then the closed-loop rows by concurrency (at high
concurrency the autoscaler adds a Recommender replica, whose cache starts cold: that shows in those rows' tails).

Each row reports latency percentiles, requests/s, errors (non-200 or transport errors), `app p50/p99` (the replica's
own time to the response head, from the app's Server-Timing header: the rest is proxy, routing and client), the
machine's CPU busy share over the row (2 cores = 100 %; everything on the machine, other users included), this
client process's CPU share, and the Recommender replica count at the end of the row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
import numpy as np
import pandas as pd

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

APP = "ray_longtail_bench"
TIMING = re.compile(r"app;dur=([0-9.]+)")
GROUPS = ["client", "proxy", "Recommender", "Encoder", "controller", "ray other", "other load"]


@dataclass
class Row:
    name: str
    load: str
    latencies: list[float] = field(default_factory=list)  # seconds
    app_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0
    cores: dict[str, float] = field(default_factory=dict)
    replicas: str = ""

    def cells(self) -> list[str]:
        lat = np.asarray(self.latencies) * 1e3
        n = len(lat) + self.errors

        def pct(values, q):
            return f"{np.percentile(values, q):.1f}" if len(values) else "-"

        app = np.asarray(self.app_ms)
        return [self.name, self.load, str(n), str(self.errors), f"{len(lat) / self.wall:.1f}" if self.wall else "-",
                pct(lat, 50), pct(lat, 95), pct(lat, 99), f"{lat.max():.1f}" if len(lat) else "-",
                f"{pct(app, 50)} / {pct(app, 99)}", f"{sum(self.cores.values()):.2f}",
                f"{self.cores.get('other load', 0.0):.2f}", self.replicas]

    def cpu_cells(self) -> list[str]:
        per_request = self.wall / max(len(self.latencies), 1) * 1e3
        return [self.name, self.load] + [f"{self.cores.get(g, 0.0):.2f} / {self.cores.get(g, 0.0) * per_request:.1f}"
                                         for g in GROUPS]


HEADER = ["row", "load", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
          "app p50 / p99 ms", "machine CPU cores", "of which other load", "Recommender replicas"]
CPU_HEADER = ["row", "load"] + [f"{g} cores / ms per req" for g in GROUPS]


def table(rows: list[Row], cpu: bool = False) -> str:
    header = CPU_HEADER if cpu else HEADER
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row.cpu_cells() if cpu else row.cells()) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- CPU accounting


def psutil_module():
    import importlib

    import ray  # noqa: F401 - Ray puts its bundled psutil on sys.path

    return importlib.import_module("psutil")


def cpu_by_group() -> dict[str, float]:
    """CPU seconds so far per group: this process (the load generator), the app's processes by role, the rest
    of Ray, and everything else on the machine (other users: noise)."""
    psutil = psutil_module()
    me = psutil.Process()
    ours = {p.pid for p in me.children(recursive=True)}
    out = dict.fromkeys(GROUPS, 0.0)
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        cmd = " ".join(proc.info["cmdline"] or [])
        used = times.user + times.system
        if proc.pid == me.pid:
            group = "client"
        elif "ProxyActor" in cmd and (proc.pid in ours or not STARTED_HERE):
            group = "proxy"
        elif "ServeReplica" in cmd and "Recommender" in cmd and (proc.pid in ours or not STARTED_HERE):
            group = "Recommender"
        elif "ServeReplica" in cmd and "Encoder" in cmd and (proc.pid in ours or not STARTED_HERE):
            group = "Encoder"
        elif "ServeController" in cmd and (proc.pid in ours or not STARTED_HERE):
            group = "controller"
        elif proc.pid in ours:
            group = "ray other"
        else:
            group = "other load"
        out[group] += used
    return out


class CpuMeter:
    """CPU cores used per group during the block (processes that end inside it are missed)."""

    def __enter__(self):
        self.before, self.t0 = cpu_by_group(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        after, wall = cpu_by_group(), max(time.perf_counter() - self.t0, 1e-9)
        self.cores = {g: max(after[g] - self.before[g], 0.0) / wall for g in GROUPS}


STARTED_HERE = True


# ------------------------------------------------------------------------------------------- requests
def build_requests(run: str, mix: dict[str, float], k: int, n: int, seed: int = 0) -> list[tuple[str, dict]]:
    recs = pd.read_parquet(f"{run}/recommendations.parquet", columns=["user_id"])
    users = recs["user_id"].astype(str).drop_duplicates().to_numpy()
    catalog = pd.read_parquet(f"{run}/catalog.parquet", columns=["item_id", "title"])
    import json

    with open(f"{run}/metrics.json") as f:
        tail_weight = json.load(f)["info"]["tail_weight"]
    rng = np.random.default_rng(seed)
    kinds = list(mix)
    weights = np.asarray([mix[x] for x in kinds], dtype=float)
    picks = rng.choice(len(kinds), size=n, p=weights / weights.sum())
    out = []
    for i, pick in enumerate(picks):
        kind = kinds[pick]
        if kind == "recommend":
            out.append(("/recommend", {"user_id": str(users[rng.integers(len(users))]), "k": k,
                                       "tail_weight": tail_weight}))
        elif kind == "cold":
            out.append(("/recommend", {"user_id": f"bench-unknown-{i}", "k": k}))
        elif kind == "similar":
            out.append(("/similar", {"item_id": str(catalog["item_id"].iloc[rng.integers(len(catalog))]), "k": k}))
        elif kind == "search":
            title = str(catalog["title"].iloc[rng.integers(len(catalog))]) or "gift"
            out.append(("/search", {"query": title.lower(), "k": k}))
        else:
            raise SystemExit(f"unknown request kind {kind!r} (recommend, cold, similar, search)")
    return out


def warm_requests(requests: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    seen, out = set(), []
    for path, body in requests:
        if path == "/recommend" and body["user_id"] not in seen and not body["user_id"].startswith("bench-"):
            seen.add(body["user_id"])
            out.append((path, body))
    return out


def record(row: Row, lock: threading.Lock, started: float, response: httpx.Response | None) -> None:
    elapsed = time.perf_counter() - started
    with lock:
        if response is None or response.status_code != 200:
            row.errors += 1
            return
        row.latencies.append(elapsed)
        match = TIMING.search(response.headers.get("server-timing", ""))
        if match:
            row.app_ms.append(float(match.group(1)))


def closed_loop(url: str, requests: list[tuple[str, dict]], concurrency: int, name: str,
                n: int | None = None, duration: float | None = None) -> Row:
    row = Row(name, f"closed, C={concurrency}" + (f", {duration:.0f} s" if duration else ""))
    lock, state = threading.Lock(), {"next": 0}
    stop_at = time.perf_counter() + duration if duration else float("inf")
    limit = n if n is not None else float("inf")

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                with lock:
                    i = state["next"]
                    state["next"] += 1
                if i >= limit or time.perf_counter() >= stop_at:
                    return
                path, body = requests[i % len(requests)]
                started = time.perf_counter()
                try:
                    response = client.post(path, json=body)
                except httpx.HTTPError:
                    response = None
                record(row, lock, started, response)

    with CpuMeter() as meter:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for future in [pool.submit(worker) for _ in range(concurrency)]:
                future.result()
        row.wall = time.perf_counter() - t0
    row.cores = meter.cores
    return row


async def _open_loop(url: str, requests: list[tuple[str, dict]], rate: float, duration: float, row: Row,
                     seed: int) -> None:
    lock = threading.Lock()
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=int(rate * duration * 1.5) + 10)
    offsets = np.cumsum(gaps)
    offsets = offsets[offsets < duration]
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def one(i: int, at: float) -> None:
            path, body = requests[i % len(requests)]
            try:
                response = await client.post(path, json=body)
            except httpx.HTTPError:
                response = None
            record(row, lock, at, response)

        t0 = time.perf_counter() + 0.05
        tasks = []
        for i, offset in enumerate(offsets):
            delay = t0 + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, t0 + offset)))
        await asyncio.gather(*tasks)


def open_loop(url: str, requests: list[tuple[str, dict]], rate: float, duration: float, name: str,
              seed: int = 1) -> Row:
    row = Row(name, f"open, Poisson {rate:.0f} req/s, {duration:.0f} s")
    with CpuMeter() as meter:
        t0 = time.perf_counter()
        asyncio.run(_open_loop(url, requests, rate, duration, row, seed))
        row.wall = time.perf_counter() - t0
    row.cores = meter.cores
    return row


def in_process(run: str, requests: list[tuple[str, dict]], n: int, name: str) -> tuple[Row, Row]:
    """The same requests answered by a plain Recommender in this process, one at a time (warm-up row first)."""
    from ray_longtail.serve.recommender import Recommender

    rec = Recommender(run)
    encoder = None

    def answer(path: str, body: dict) -> None:
        nonlocal encoder
        if path == "/recommend":
            rec.recommend(**body)
        elif path == "/similar":
            rec.similar(**body)
        else:
            if encoder is None:
                from ray_longtail.embed import make_encoder

                encoder = make_encoder(rec.config.embed.model, rec.config.embed.max_length, num_threads=1)
            rec.search(encoder.encode([body["query"]])[0], k=body["k"])

    rows = []
    for row, batch in ((Row(f"{name} warm-up", "sequential"), warm_requests(requests)),
                       (Row(name, "sequential"), [requests[i % len(requests)] for i in range(n)])):
        with CpuMeter() as meter:
            t0 = time.perf_counter()
            for path, body in batch:
                started = time.perf_counter()
                answer(path, body)
                row.latencies.append(time.perf_counter() - started)
            row.wall = time.perf_counter() - t0
        row.cores = meter.cores
        rows.append(row)
    return rows[0], rows[1]


# ------------------------------------------------------------------------------------------- app lifecycle
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(run: str, min_replicas: int | None = None) -> str:
    import ray
    from ray import serve

    from ray_longtail.runtime import RAY_ENV
    from ray_longtail.serve.app import build_app

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2,
             logging_level="ERROR", log_to_driver=False, runtime_env={"env_vars": dict(RAY_ENV)})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args: dict = {"run": run}
    if min_replicas:
        args["recommender_options"] = {"autoscaling_config": {
            "min_replicas": min_replicas, "max_replicas": max(min_replicas, 2), "target_ongoing_requests": 16,
            "upscale_delay_s": 2, "downscale_delay_s": 30}}
    serve.run(build_app(args), name=APP, route_prefix="/", logging_config={"enable_access_log": False})
    return f"http://127.0.0.1:{port}"


def replicas(started_here: bool) -> str:
    if not started_here:
        return "?"
    from ray import serve

    status = serve.status().applications[APP].deployments["Recommender"]
    return str(status.replica_states.get("RUNNING", 0))


def stop_app() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder (also: <artifacts>/latest)")
    parser.add_argument("--url", help="a running app (http://127.0.0.1:PORT); default: start one here")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, nargs="*", default=[30, 30, 60],
                        help="seconds per concurrency level (one value for all, or one per level)")
    parser.add_argument("--requests", type=int, help="requests per closed-loop row instead of --duration")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop offered load, req/s (0 = skip)")
    parser.add_argument("--rate-duration", type=float, default=60.0)
    parser.add_argument("--mix", default="recommend=1", help="request kinds and weights: recommend,cold,similar,search")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--in-process-requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-replicas", type=int,
                        help="Recommender min_replicas when the bench starts the app (default: the app's, 1)")
    args = parser.parse_args(argv)

    from ray_longtail.artifacts import resolve_run

    run = resolve_run(args.run)
    if args.url and not re.match(r"^http://127\.0\.0\.1:\d+/?$", args.url):
        raise SystemExit("--url must be http://127.0.0.1:PORT (this bench only talks to the local machine)")
    mix = {kind: float(weight) for kind, weight in (part.split("=") for part in args.mix.split(","))}
    requests = build_requests(run, mix, args.k, 20_000, args.seed)
    warm = warm_requests(requests)
    durations = args.duration if len(args.duration) != 1 else args.duration * len(args.concurrency)
    if args.concurrency and not args.requests and len(durations) != len(args.concurrency):
        raise SystemExit("--duration takes one value or one per --concurrency level")

    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}", flush=True)
    print(f"# command: {' '.join(['python', *sys.argv])}", flush=True)
    print(f"# run: {run}; mix {mix}; k={args.k}; {len(warm)} distinct known users", flush=True)
    global STARTED_HERE
    started_here = STARTED_HERE = not args.url
    t0 = time.perf_counter()
    url = args.url.rstrip("/") if args.url else start_app(run, args.min_replicas)
    if started_here:
        print(f"# app started on {url} in {time.perf_counter() - t0:.1f} s", flush=True)
    rows: list[Row] = []
    try:
        # open loop first: the app then has its start-up replica set (1 Recommender, warm); closed loops at high
        # concurrency make the autoscaler add a replica (cold cache), and removing it later would disturb a row
        warm_row = closed_loop(url, warm, 1, "serve warm-up", n=len(warm))
        warm_row.replicas = replicas(started_here)
        rows.append(warm_row)
        if args.rate > 0:
            row = open_loop(url, requests, args.rate, args.rate_duration, "serve")
            row.replicas = replicas(started_here)
            rows.append(row)
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        for i, concurrency in enumerate(args.concurrency):
            closed_loop(url, warm, min(4, concurrency), "serve warm-up", n=len(warm))
            duration = None if args.requests else durations[i]
            row = closed_loop(url, requests, concurrency, "serve", n=args.requests, duration=duration)
            row.replicas = replicas(started_here)
            rows.append(row)
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        if started_here:
            stop_app()
    warm_in, steady_in = in_process(run, requests, args.in_process_requests, "in-process Recommender")
    rows += [warm_in, steady_in]
    print()
    print(table(rows))
    print("\nCPU by process group (cores used during the row / CPU ms per successful request):\n")
    print(table(rows, cpu=True))
    serve_c1 = next((r for r in rows if r.name == "serve" and r.load.startswith("closed, C=1,")), None)
    if serve_c1 and serve_c1.latencies and steady_in.latencies:
        ratio = statistics.median(serve_c1.latencies) / statistics.median(steady_in.latencies)
        print(f"\nServe/in-process p50 at concurrency 1: {statistics.median(serve_c1.latencies) * 1e3:.1f} ms / "
              f"{statistics.median(steady_in.latencies) * 1e3:.1f} ms = {ratio:.1f}x")
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())

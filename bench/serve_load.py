"""Serving load: closed-loop clients at several concurrencies and an open-loop offered rate against the Ray Serve
app, and the same requests answered by the in-process `Recommender` (no HTTP, no Serve: the difference is Serve's
overhead).

    python bench/serve_load.py --run artifacts/latest [--url http://127.0.0.1:8000]
        [--concurrency 1 8 32] [--duration 30 30 60 | --requests 400] [--rate 100 --rate-duration 60]
        [--mix recommend=5,adhoc=1,cold=1,similar=1,similar_text=1,search=1] [--k 20] [--add-items 5]
        [--kill-at 20] [--min-replicas 2] [--serve-config YAML | --serve-defaults]

Without --url the bench starts the app itself on its own local Ray (`ray.init(address="local", num_cpus=2)`,
127.0.0.1, a free port) over a temporary copy of the run, as `ray-longtail serve` does: serve_config.yaml's env vars
(HAProxy ingress, throughput-optimised mode, retries) and deployment options, or with --serve-defaults Ray Serve's
defaults and the app's decorators; RAY_SERVE_* variables set for this command win (all are printed). It stops the
app at the end. With --url it only sends requests (127.0.0.1 only). The load generator is a minimal asyncio
HTTP/1.1 client on keep-alive connections (well under 1 ms of CPU per request; httpx cost 2-27 ms here).

Requests are drawn (seeded) from the run: `recommend` = known users of recommendations.parquet with k=--k and the
run's tail_weight; `adhoc` = unknown users whose recent_items are a known user's last 20 history items; `cold` =
unknown users; `similar` = catalog item ids; `similar_text` / `search` = catalog titles as texts / queries (these
call the Encoder). Before the load, --add-items new items are POSTed (every later answer merges them). Closed
loop: C threads, each with its own keep-alive connection, send the next request as soon as the previous answer
arrives. Open loop: requests are sent at Poisson arrival times of the offered rate whatever the answers do, and
latency counts from the scheduled send time (queueing included, no coordinated omission).

Rows: each distinct known user's first request (one client), the open-loop row, then the closed-loop rows by
concurrency; --kill-at kills a Recommender replica during the last closed-loop row (errors = what clients saw).
Each row reports latency percentiles, requests/s, errors (non-200 or transport errors), `app p50/p99` (the
replica's own time to the response head, from the app's Server-Timing header: the rest is proxy, routing and
client), the machine's CPU busy share over the row (2 cores = 100 %; everything on the machine, other users
included), the host's steal time (cores' worth of time the hypervisor ran something else while this VM's CPUs
wanted to run: a noisy host), the Recommender replica count at the end of the row; then latency by request kind,
and CPU by process group per request.
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
    steal: float = 0.0  # cores' worth of time the hypervisor gave this VM's CPUs to something else
    by_kind: dict[str, list[float]] = field(default_factory=dict)  # seconds, successful requests

    def cells(self) -> list[str]:
        lat = np.asarray(self.latencies) * 1e3
        n = len(lat) + self.errors

        def pct(values, q):
            return f"{np.percentile(values, q):.1f}" if len(values) else "-"

        app = np.asarray(self.app_ms)
        return [self.name, self.load, str(n), str(self.errors), f"{len(lat) / self.wall:.1f}" if self.wall else "-",
                pct(lat, 50), pct(lat, 95), pct(lat, 99), f"{lat.max():.1f}" if len(lat) else "-",
                f"{pct(app, 50)} / {pct(app, 99)}", f"{sum(self.cores.values()):.2f}",
                f"{self.cores.get('other load', 0.0):.2f}", f"{self.steal:.2f}", self.replicas]

    def cpu_cells(self) -> list[str]:
        per_request = self.wall / max(len(self.latencies), 1) * 1e3
        return [self.name, self.load] + [f"{self.cores.get(g, 0.0):.2f} / {self.cores.get(g, 0.0) * per_request:.1f}"
                                         for g in GROUPS]


HEADER = ["row", "load", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
          "app p50 / p99 ms", "machine CPU cores", "of which other load", "host steal cores",
          "Recommender replicas"]
CPU_HEADER = ["row", "load"] + [f"{g} cores / ms per req" for g in GROUPS]


def kind_table(rows: list[Row]) -> str:
    """p50 / p99 ms per request kind and row."""
    kinds = list(dict.fromkeys(kind for row in rows for kind in row.by_kind))
    lines = ["| row | load | " + " | ".join(f"{kind} p50 / p99 ms" for kind in kinds) + " |",
             "|" + "---|" * (len(kinds) + 2)]
    for row in rows:
        cells = []
        for kind in kinds:
            lat = np.asarray(row.by_kind.get(kind, [])) * 1e3
            cells.append(f"{np.percentile(lat, 50):.1f} / {np.percentile(lat, 99):.1f}" if len(lat) else "-")
        lines.append(f"| {row.name} | {row.load} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overhead_table(serve: Row, local: Row) -> str:
    """Serve vs in-process p50 per request kind at one client: the ratio, and the difference (what Serve's request
    path adds to each call: HAProxy, the replica's HTTP server, Serve's replica wrapper, FastAPI)."""
    lines = ["| kind | Serve p50 ms | in-process p50 ms | ratio | Serve - in-process ms |", "|---|---|---|---|---|"]
    for kind in [k for k in serve.by_kind if local.by_kind.get(k)]:
        remote, here = statistics.median(serve.by_kind[kind]) * 1e3, statistics.median(local.by_kind[kind]) * 1e3
        lines.append(f"| {kind} | {remote:.1f} | {here:.1f} | {remote / here:.1f}x | {remote - here:.1f} |")
    return "\n".join(lines)


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


def is_proxy(name: str, cmd: str) -> bool:
    """The HTTP ingress: Serve's ProxyActor, or with HAProxy ingress the haproxy process and its manager actor
    (which also parses HAProxy's per-request metrics log)."""
    return name == "haproxy" or "ProxyActor" in cmd or "HAProxyManager" in cmd


def process_group(pid: int, name: str, cmd: str, me: int, ours: set[int]) -> str:
    """The group a process's CPU counts under: this process (the load generator), the app's processes by role,
    the rest of Ray, and everything else on the machine (other users: noise)."""
    mine = pid in ours or not STARTED_HERE
    if pid == me:
        return "client"
    if is_proxy(name, cmd) and mine:
        return "proxy"
    if "ServeReplica" in cmd and "Recommender" in cmd and mine:
        return "Recommender"
    if "ServeReplica" in cmd and "Encoder" in cmd and mine:
        return "Encoder"
    if "ServeController" in cmd and mine:
        return "controller"
    return "ray other" if pid in ours else "other load"


def cpu_by_process(procs=None) -> dict[int, tuple[str, float]]:
    """{pid: (group, CPU seconds so far)} for every process on the machine, or for `procs` (this process and its
    descendants, as psutil processes)."""
    psutil = psutil_module()
    me = psutil.Process()
    ours = {p.pid for p in (procs if procs is not None else me.children(recursive=True))} - {me.pid}
    out = {}
    for proc in procs if procs is not None else psutil.process_iter():
        try:
            with proc.oneshot():
                times, cmd, name = proc.cpu_times(), " ".join(proc.cmdline()), proc.name()
        except psutil.Error:
            continue
        out[proc.pid] = (process_group(proc.pid, name, cmd, me.pid, ours), times.user + times.system)
    return out


class CpuMeter:
    """CPU cores used per group during the block. The app's processes are also read every second, so a process
    that ends inside the block (a killed replica) still counts up to its last reading, and one that starts inside
    it (its replacement) counts from zero."""

    interval_s = 1.0

    def __enter__(self):
        self.steal0 = psutil_module().cpu_times().steal
        self.first = cpu_by_process()
        self.last = dict(self.first)
        self.t0, self.done = time.perf_counter(), threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        return self

    def _sample(self) -> None:
        me = psutil_module().Process()
        while not self.done.wait(self.interval_s):
            self.last.update(cpu_by_process([me, *me.children(recursive=True)]))

    def __exit__(self, *exc):
        self.done.set()
        self.sampler.join()
        self.last.update(cpu_by_process())
        wall = max(time.perf_counter() - self.t0, 1e-9)
        used = dict.fromkeys(GROUPS, 0.0)
        for pid, (group, seconds) in self.last.items():
            used[group] += max(seconds - self.first.get(pid, (group, 0.0))[1], 0.0)
        self.cores = {g: used[g] / wall for g in GROUPS}
        self.steal = (psutil_module().cpu_times().steal - self.steal0) / wall


STARTED_HERE = True


# ------------------------------------------------------------------------------------------- requests
def build_requests(run: str, mix: dict[str, float], k: int, n: int, seed: int = 0) -> list[tuple[str, str, dict]]:
    """(kind, path, body) requests drawn from the run; kinds: recommend (known user), adhoc (an unknown user
    whose recent_items are a known user's last 20 history items), cold (unknown user), similar (by item id),
    similar_text, search (catalog titles as queries)."""
    import json

    recs = pd.read_parquet(f"{run}/recommendations.parquet", columns=["user_id"])
    users = recs["user_id"].astype(str).drop_duplicates().to_numpy()
    catalog = pd.read_parquet(f"{run}/catalog.parquet", columns=["item_id", "title"])
    history = pd.concat([pd.read_parquet(f"{run}/split/{part}.parquet", columns=["user_id", "item_id", "timestamp"])
                         for part in ("train", "valid")]).sort_values("timestamp", kind="stable")
    recent = history.groupby("user_id")["item_id"].apply(lambda s: [str(i) for i in s.tail(20)])
    with open(f"{run}/metrics.json") as f:
        tail_weight = json.load(f)["info"]["tail_weight"]
    rng = np.random.default_rng(seed)
    kinds = list(mix)
    unknown = set(kinds) - {"recommend", "adhoc", "cold", "similar", "similar_text", "search"}
    if unknown:
        raise SystemExit(f"unknown request kinds {sorted(unknown)} (recommend, adhoc, cold, similar, similar_text, "
                         "search)")
    weights = np.asarray([mix[x] for x in kinds], dtype=float)
    picks = rng.choice(len(kinds), size=n, p=weights / weights.sum())
    out = []
    for i, pick in enumerate(picks):
        kind = kinds[pick]
        title = str(catalog["title"].iloc[rng.integers(len(catalog))]).lower() or "gift"
        if kind == "recommend":
            body = {"user_id": str(users[rng.integers(len(users))]), "k": k, "tail_weight": tail_weight}
        elif kind == "adhoc":
            body = {"user_id": f"bench-adhoc-{i}", "k": k,
                    "recent_items": recent.loc[str(users[rng.integers(len(users))])]}
        elif kind == "cold":
            body = {"user_id": f"bench-unknown-{i}", "k": k}
        elif kind == "similar":
            body = {"item_id": str(catalog["item_id"].iloc[rng.integers(len(catalog))]), "k": k}
        elif kind == "similar_text":
            body = {"text": title, "k": k}
        else:
            body = {"query": title, "k": k}
        path = {"recommend": "/recommend", "adhoc": "/recommend", "cold": "/recommend", "similar": "/similar",
                "similar_text": "/similar", "search": "/search"}[kind]
        out.append((kind, path, body))
    return out


def new_items(n: int, seed: int = 0) -> list[dict]:
    """`n` new items for POST /items (texts a shop could add; ids that no run has)."""
    words = ["linen", "ceramic", "vintage", "glass", "oak", "felt", "paper", "copper", "wool", "cotton"]
    things = ["lantern", "mug", "garland", "coaster", "tote bag", "candle holder", "notebook", "tea towel"]
    rng = np.random.default_rng(seed)
    return [{"item_id": f"BENCH-NEW-{seed}-{i}",
             "title": f"{rng.choice(words)} {rng.choice(words)} {rng.choice(things)}",
             "description": "added at serving time by bench/serve_load.py", "category": "bench"} for i in range(n)]


def warm_requests(requests: list[tuple[str, str, dict]]) -> list[tuple[str, str, dict]]:
    """Each distinct known user's first request."""
    seen, out = set(), []
    for kind, path, body in requests:
        if kind == "recommend" and body["user_id"] not in seen:
            seen.add(body["user_id"])
            out.append((kind, path, body))
    return out


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection on asyncio streams. A request costs the client a fraction
    of a millisecond of CPU where httpx costs 1-2 ms (and an httpx AsyncClient with a backlog of thousands of
    in-flight requests far more): on a 2-core machine the load generator must not take the server's CPU."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, str] | None:
        """(status, Server-Timing header) or None on a transport error (the connection is then reopened)."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = dict(line.split(":", 1) for line in head[1:] if ":" in line)
            headers = {key.strip().lower(): value.strip() for key, value in headers.items()}
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while (size := int((await self.reader.readline()).strip(), 16)) > 0:
                    await self.reader.readexactly(size + 2)
                await self.reader.readline()
            else:
                await self.reader.readexactly(int(headers.get("content-length", 0)))
            if headers.get("connection", "").lower() == "close":
                self.close()
            return int(head[0].split()[1]), headers.get("server-timing", "")
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            self.close()
            return None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def encoded(requests: list[tuple[str, str, dict]]) -> list[tuple[str, str, bytes]]:
    import json

    return [(kind, path, json.dumps(body).encode()) for kind, path, body in requests]


def record(row: Row, started: float, result: tuple[int, str] | None, kind: str) -> None:
    elapsed = time.perf_counter() - started
    if result is None or result[0] != 200:
        row.errors += 1
        return
    row.latencies.append(elapsed)
    row.by_kind.setdefault(kind, []).append(elapsed)
    match = TIMING.search(result[1])
    if match:
        row.app_ms.append(float(match.group(1)))


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    return host, int(port)


async def _closed_loop(url: str, requests: list[tuple[str, str, bytes]], concurrency: int, row: Row,
                       n: float, stop_at: float) -> None:
    state = {"next": 0}

    async def worker() -> None:
        connection = Connection(*host_port(url))
        while True:
            i = state["next"]
            state["next"] += 1
            if i >= n or time.perf_counter() >= stop_at:
                connection.close()
                return
            kind, path, body = requests[i % len(requests)]
            started = time.perf_counter()
            record(row, started, await connection.post(path, body), kind)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def closed_loop(url: str, requests: list[tuple[str, str, dict]], concurrency: int, name: str,
                n: int | None = None, duration: float | None = None) -> Row:
    """C clients on their own keep-alive connections, each sending its next request when the answer arrives."""
    row = Row(name, f"closed, C={concurrency}" + (f", {duration:.0f} s" if duration else ""))
    stop_at = time.perf_counter() + duration if duration else float("inf")
    with CpuMeter() as meter:
        t0 = time.perf_counter()
        asyncio.run(_closed_loop(url, encoded(requests), concurrency, row, n if n is not None else float("inf"),
                                 stop_at))
        row.wall = time.perf_counter() - t0
    row.cores, row.steal = meter.cores, meter.steal
    return row


async def _open_loop(url: str, requests: list[tuple[str, str, bytes]], rate: float, duration: float, row: Row,
                     seed: int, connections: int = 64) -> None:
    """Requests at Poisson times on a pool of keep-alive connections; a request whose time has come waits for a
    free connection, and its latency counts from its scheduled time."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=int(rate * duration * 1.5) + 10)
    offsets = np.cumsum(gaps)
    offsets = offsets[offsets < duration]
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(*host_port(url)))

    async def one(i: int, at: float) -> None:
        kind, path, body = requests[i % len(requests)]
        connection = await pool.get()
        try:
            result = await connection.post(path, body)
        finally:
            pool.put_nowait(connection)
        record(row, at, result, kind)

    t0 = time.perf_counter() + 0.05
    tasks = []
    for i, offset in enumerate(offsets):
        delay = t0 + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, t0 + offset)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()


def open_loop(url: str, requests: list[tuple[str, dict]], rate: float, duration: float, name: str,
              seed: int = 1) -> Row:
    row = Row(name, f"open, Poisson {rate:.0f} req/s, {duration:.0f} s")
    with CpuMeter() as meter:
        t0 = time.perf_counter()
        asyncio.run(_open_loop(url, encoded(requests), rate, duration, row, seed))
        row.wall = time.perf_counter() - t0
    row.cores, row.steal = meter.cores, meter.steal
    return row


def in_process(run: str, requests: list[tuple[str, str, dict]], n: int, name: str) -> tuple[Row, Row]:
    """The same requests answered by a plain Recommender in this process (with the items the app added), one at
    a time (first-request row first); texts are embedded by the run's encoder here, as the replicas do. BLAS runs
    on one thread, as in a replica (Ray sets OMP_NUM_THREADS=1 for an actor of under one CPU): with the default
    pool the idle OpenBLAS thread spun on the second core and the row's CPU read twice what the calls used."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _in_process(run, requests, n, name)


def _in_process(run: str, requests: list[tuple[str, str, dict]], n: int, name: str) -> tuple[Row, Row]:
    from ray_longtail.embed import make_encoder
    from ray_longtail.serve.recommender import Recommender

    rec = Recommender(run)
    encoder = make_encoder(rec.config.embed.model, rec.config.embed.max_length, num_threads=1,
                           runtime=rec.config.embed.runtime)

    def answer(path: str, body: dict) -> None:
        if path == "/recommend":
            rec.recommend(**body)
        elif path == "/similar" and "item_id" in body:
            rec.similar(**body)
        elif path == "/similar":
            rec.similar(vector=encoder.encode([body["text"]])[0], k=body["k"])
        else:
            rec.search(encoder.encode([body["query"]])[0], k=body["k"])

    rows = []
    for row, batch in ((Row(f"{name} first requests", "sequential"), warm_requests(requests)),
                       (Row(name, "sequential"), [requests[i % len(requests)] for i in range(n)])):
        with CpuMeter() as meter:
            t0 = time.perf_counter()
            for kind, path, body in batch:
                started = time.perf_counter()
                answer(path, body)
                elapsed = time.perf_counter() - started
                row.latencies.append(elapsed)
                row.by_kind.setdefault(kind, []).append(elapsed)
            row.wall = time.perf_counter() - t0
        row.cores, row.steal = meter.cores, meter.steal
        rows.append(row)
    return rows[0], rows[1]


def kill_replica_later(delay: float) -> threading.Thread:
    """Kill one Recommender replica `delay` s from now (no restart: Serve must replace it). The victim is found
    now, by its actor name in the GCS (the state API needs the dashboard, which the bench does not start)."""
    import ray

    victims = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
               if a["namespace"] == "serve" and f"{APP}#Recommender#" in a["name"]]
    if not victims:
        raise SystemExit("--kill-at: no Recommender replica found")
    handle, started = ray.get_actor(victims[0], namespace="serve"), time.perf_counter()

    def kill() -> None:
        time.sleep(delay)
        ray.kill(handle, no_restart=True)
        print(f"# killed Recommender replica {victims[0]} at +{time.perf_counter() - started:.1f} s "
              f"({len(victims)} running before)", flush=True)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------------------------- app lifecycle
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(run: str, min_replicas: int | None = None, serve_config: str | None = None,
              serve_defaults: bool = False) -> str:
    """The app on a local Ray with serve_config.yaml's env vars and deployment options, as `ray-longtail serve`
    runs it (or Ray Serve's defaults and the app's decorators with `serve_defaults`)."""
    from ray import serve

    from ray_longtail.serve.app import build_app

    port, deployments = start_serve(serve_config, serve_defaults)
    recommender = dict(deployments.get("Recommender") or {})
    if min_replicas:
        recommender["autoscaling_config"] = {
            **(recommender.get("autoscaling_config") or {"target_ongoing_requests": 16, "upscale_delay_s": 2,
                                                          "downscale_delay_s": 30}),
            "min_replicas": min_replicas, "max_replicas": max(min_replicas, 2)}
    args: dict = {"run": run, "encoder_options": deployments.get("Encoder"), "recommender_options": recommender}
    serve.run(build_app(args), name=APP, route_prefix="/", logging_config={"enable_access_log": False})
    return f"http://127.0.0.1:{port}"


def start_serve(serve_config: str | None = None, serve_defaults: bool = False) -> tuple[int, dict]:
    """Serve on a local 2-CPU Ray with serve_config.yaml's env vars (RAY_SERVE_* already set here win), HTTP on a
    free loopback port; returns (port, the file's deployment options by name)."""
    import ray
    from ray import serve

    from ray_longtail.runtime import RAY_ENV
    from ray_longtail.serve.launch import serve_settings

    env, deployments, _ = serve_settings(serve_config) if not serve_defaults else ({}, {}, {})
    for key, value in env.items():
        os.environ.setdefault(key, value)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2,
             logging_level="ERROR", log_to_driver=False, runtime_env={"env_vars": dict(RAY_ENV)})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port, deployments


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder (also: <artifacts>/latest)")
    parser.add_argument("--url", help="a running app (http://127.0.0.1:PORT); default: start one here")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, nargs="*", default=[30, 30, 60],
                        help="seconds per concurrency level (one value for all, or one per level)")
    parser.add_argument("--requests", type=int, help="requests per closed-loop row instead of --duration")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop offered load, req/s (0 = skip)")
    parser.add_argument("--rate-duration", type=float, default=60.0)
    parser.add_argument("--mix", default="recommend=5,adhoc=1,cold=1,similar=1,similar_text=1,search=1",
                        help="request kinds and weights: recommend, adhoc, cold, similar, similar_text, search")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--add-items", type=int, default=5,
                        help="POST /items this many new items before the load (the app started here serves a copy "
                             "of the run, so the run itself is not changed)")
    parser.add_argument("--kill-at", type=float,
                        help="kill a Recommender replica this many seconds into the last closed-loop row")
    parser.add_argument("--in-process-requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-replicas", type=int,
                        help="Recommender min_replicas when the bench starts the app (default: serve_config.yaml's)")
    parser.add_argument("--serve-config", help="Serve config for the app started here (default: the packaged "
                                                 "serve_config.yaml: its env vars and deployment options)")
    parser.add_argument("--serve-defaults", action="store_true",
                        help="start the app with Ray Serve's defaults and the app's decorators instead")
    return parser.parse_args(argv)


def load_rows(url: str, requests, args, durations: list[float], started_here: bool) -> list[Row]:
    """The open-loop row, then the closed-loop rows by concurrency (the last one with the replica kill)."""
    rows = []
    if args.rate > 0:
        row = open_loop(url, requests, args.rate, args.rate_duration, "serve")
        row.replicas = replicas(started_here)
        rows.append(row)
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    for i, concurrency in enumerate(args.concurrency):
        duration = None if args.requests else durations[i]
        last = i == len(args.concurrency) - 1
        if last and args.kill_at is not None and started_here:
            kill_replica_later(args.kill_at)
        row = closed_loop(url, requests, concurrency, "serve" + (" + replica kill" if last and args.kill_at
                                                                 is not None else ""), n=args.requests,
                          duration=duration)
        row.replicas = replicas(started_here)
        rows.append(row)
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    import shutil
    import tempfile

    from ray_longtail.artifacts import resolve_run

    args = parse_args(argv)
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
    scratch = tempfile.mkdtemp(prefix="serve_load_") if started_here else None
    if scratch:
        run = shutil.copytree(run, os.path.join(scratch, os.path.basename(run.rstrip("/"))),
                              ignore=shutil.ignore_patterns("added_items"))
    t0 = time.perf_counter()
    url = args.url.rstrip("/") if args.url else start_app(run, args.min_replicas, args.serve_config,
                                                               args.serve_defaults)
    if started_here:
        flags = {k: v for k, v in sorted(os.environ.items()) if k.startswith("RAY_SERVE_")}
        print(f"# app started on {url} in {time.perf_counter() - t0:.1f} s; Serve env: {flags or 'defaults'}",
              flush=True)
    rows: list[Row] = []
    try:
        if args.add_items:
            added = httpx.post(f"{url}/items", json={"items": new_items(args.add_items, args.seed)}, timeout=60)
            print(f"# POST /items ({args.add_items} new items): {added.status_code} {added.text[:80]}", flush=True)
        warm_row = closed_loop(url, warm, 1, "serve first requests", n=len(warm))
        warm_row.replicas = replicas(started_here)
        rows.append(warm_row)
        rows += load_rows(url, requests, args, durations, started_here)
    finally:
        if started_here:
            stop_app()
    first_in, steady_in = in_process(run, requests, args.in_process_requests, "in-process Recommender")
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    rows += [first_in, steady_in]
    print()
    print(table(rows))
    print("\nLatency by request kind:\n")
    print(kind_table(rows))
    print("\nCPU by process group (cores used during the row / CPU ms per successful request):\n")
    print(table(rows, cpu=True))
    serve_c1 = next((r for r in rows if r.name == "serve" and r.load.startswith("closed, C=1,")), None)
    if serve_c1 and serve_c1.latencies and steady_in.latencies:
        ratio = statistics.median(serve_c1.latencies) / statistics.median(steady_in.latencies)
        print(f"\nServe/in-process p50 at concurrency 1: {statistics.median(serve_c1.latencies) * 1e3:.2f} ms / "
              f"{statistics.median(steady_in.latencies) * 1e3:.2f} ms = {ratio:.2f}x; by request kind:\n")
        print(overhead_table(serve_c1, steady_in))
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())

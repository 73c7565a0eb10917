"""Soak and faults: long mixed traffic against the Ray Serve app with items added all along, a Recommender replica
killed and the whole Ray head restarted during the traffic. Reports per window: requests by answer (200, 4xx,
5xx, transport error = no answer), latency, and the resident memory of every replica process; then what the
faults cost (failed requests, seconds without answers) and whether anything acknowledged was lost.

    python bench/soak.py --run artifacts/latest [--duration 600] [--window 60] [--concurrency 8]
        [--add-every 5] [--kill-at 240] [--restart-at 420]

The app runs here as `bench/serve_load.py` starts it (its own local Ray, serve_config.yaml's settings, a temporary
copy of the run). Traffic is `serve_load.py`'s seeded mix (known / ad-hoc / cold `/recommend`, `/similar` by id and
text, `/search`) on C keep-alive connections; another thread POSTs one new item every --add-every seconds and
remembers which were acknowledged (200). --kill-at kills one Recommender replica (Serve replaces it). --restart-at
stops Serve and Ray entirely (`serve.shutdown(); ray.shutdown()`: every Ray process of the head ends) and starts
them again over the same run folder, as a restarted machine or `ray-longtail serve` would; clients keep sending to
the new port. At the end every acknowledged item must be found by `/similar` (they live in `<run>/added_items/`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load  # noqa: E402 - the bench next to this one: requests, client, app lifecycle

MIX = "recommend=5,adhoc=1,cold=1,similar=1,similar_text=1,search=1"


class Target:
    """The app's current base URL (it changes when the head is restarted) and the outage bookkeeping."""

    def __init__(self, url: str):
        self.url, self.lock = url, threading.Lock()
        self.last_ok = time.perf_counter()
        self.longest_gap = 0.0

    def answered(self) -> None:
        now = time.perf_counter()
        with self.lock:
            self.longest_gap = max(self.longest_gap, now - self.last_ok)
            self.last_ok = now


class Window:
    def __init__(self, index: int):
        self.index, self.statuses, self.latencies = index, Counter(), []


def rss_mb() -> dict[str, float]:
    """Resident MB per Serve replica process (Recommender, Encoder), by pid."""
    psutil = serve_load.psutil_module()
    out = {}
    for proc in psutil.process_iter(["cmdline", "memory_info"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "ServeReplica" in cmd and proc.info["memory_info"] is not None:
            role = "Recommender" if "Recommender" in cmd else "Encoder" if "Encoder" in cmd else "other"
            out[f"{role} {proc.pid}"] = proc.info["memory_info"].rss / 2**20
    return out


async def _client(target: Target, requests, windows: list[Window], t0: float, stop_at: float, offset: int) -> None:
    url, connection, i = None, None, offset
    while (now := time.perf_counter()) < stop_at:
        if target.url != url:
            url = target.url
            connection = serve_load.Connection(*serve_load.host_port(url))
        kind, path, body = requests[i % len(requests)]
        i += 1
        result = await connection.post(path, body)
        window = windows[min(int((now - t0) // WINDOW_S), len(windows) - 1)]
        if result is None:
            window.statuses["no answer"] += 1
            await asyncio.sleep(0.05)
            continue
        status = result[0]
        window.statuses["200" if status == 200 else f"{status // 100}xx"] += 1
        if status == 200:
            window.latencies.append(time.perf_counter() - now)
            target.answered()


def traffic(target: Target, requests, windows: list[Window], concurrency: int, t0: float, stop_at: float) -> None:
    async def main():
        step = max(len(requests) // concurrency, 1)
        await asyncio.gather(*(_client(target, requests, windows, t0, stop_at, c * step) for c in range(concurrency)))

    asyncio.run(main())


def add_items(target: Target, every: float, stop_at: float, acknowledged: list[str], refused: Counter) -> None:
    n = 0
    while time.perf_counter() < stop_at:
        item = {"item_id": f"SOAK-{n}", "title": f"Soak test lantern number {n} in brushed copper",
                "description": "hand made, battery powered, warm white light", "category": "lighting"}
        n += 1
        try:
            response = httpx.post(f"{target.url}/items", json={"items": [item]}, timeout=30)
            if response.status_code == 200:
                acknowledged.append(item["item_id"])
            else:
                refused[str(response.status_code)] += 1
        except httpx.HTTPError:
            refused["no answer"] += 1
        time.sleep(every)


def restart_head(run: str, target: Target, events: list[str], t0: float) -> None:
    started = time.perf_counter()
    serve_load.stop_app()
    events.append(f"+{started - t0:.0f} s: Serve and Ray shut down ({time.perf_counter() - started:.1f} s)")
    target.url = serve_load.start_app(run)
    events.append(f"+{time.perf_counter() - t0:.0f} s: Ray and the app started again on {target.url} "
                  f"({time.perf_counter() - started:.1f} s after the shutdown began)")
    leftovers = [p.pid for p in serve_load.psutil_module().process_iter(["cmdline"])
                 if "haproxy" in " ".join(p.info["cmdline"] or []) and p.ppid() == 1]
    if leftovers:
        events.append(f"orphaned HAProxy processes after the restart: {leftovers}")


def missing_items(url: str, acknowledged: list[str]) -> list[str]:
    missing = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for item_id in acknowledged:
            if client.post("/similar", json={"item_id": item_id, "k": 1}).status_code != 200:
                missing.append(item_id)
    return missing


def report(windows: list[Window], rss: list[dict[str, float]], args, events: list[str], target: Target,
           acknowledged: list[str], refused: Counter, missing: list[str]) -> str:
    lines = ["| window | requests | 200 | 4xx | 5xx | no answer | p50 ms | p99 ms | replica RSS MB (sum) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for window, memory in zip(windows, rss[1:], strict=True):
        lat, s = np.asarray(window.latencies) * 1e3, window.statuses
        p50, p99 = (f"{np.percentile(lat, q):.1f}" for q in (50, 99)) if len(lat) else ("-", "-")
        lines.append(f"| {window.index * args.window:.0f}-{(window.index + 1) * args.window:.0f} s | "
                     f"{sum(s.values())} | {s['200']} | {s['4xx']} | {s['5xx']} | {s['no answer']} | {p50} | {p99} | "
                     f"{sum(memory.values()):.0f} |")
    total = sum((w.statuses for w in windows), Counter())
    lines += ["", f"- requests: {sum(total.values())}: {dict(total)}",
              f"- replica RSS at the start: {json.dumps({k: round(v) for k, v in rss[0].items()})}",
              f"- replica RSS at the end:   {json.dumps({k: round(v) for k, v in rss[-1].items()})}",
              f"- items POSTed and acknowledged: {len(acknowledged)}; refused: {dict(refused)}; acknowledged but "
              f"not found at the end: {len(missing)} {missing[:5]}",
              f"- longest time without any 200 answer: {target.longest_gap:.1f} s", *[f"- {e}" for e in events]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--add-every", type=float, default=5.0)
    parser.add_argument("--kill-at", type=float, default=240.0, help="kill a Recommender replica (<0: never)")
    parser.add_argument("--restart-at", type=float, default=420.0, help="restart Ray and the app (<0: never)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


WINDOW_S = 60.0


def main(argv: list[str] | None = None) -> int:
    global WINDOW_S
    args = parse_args(argv)
    WINDOW_S = args.window
    from ray_longtail.artifacts import resolve_run

    source = Path(resolve_run(args.run))
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    run = workdir / source.name
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("added_items"))
    mix = {kind: float(weight) for kind, weight in (part.split("=") for part in MIX.split(","))}
    requests = serve_load.encoded(serve_load.build_requests(str(run), mix, 20, 4000, args.seed))
    target = Target(serve_load.start_app(str(run)))
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, app on {target.url}, "
          f"run {source}", flush=True)
    windows = [Window(i) for i in range(int(np.ceil(args.duration / args.window)))]
    rss, events, acknowledged, refused = [rss_mb()], [], [], Counter()
    t0 = time.perf_counter()
    stop_at = t0 + args.duration
    threads = [threading.Thread(target=traffic, args=(target, requests, windows, args.concurrency, t0, stop_at)),
               threading.Thread(target=add_items, args=(target, args.add_every, stop_at, acknowledged, refused))]
    for thread in threads:
        thread.start()
    faults = sorted([(at, name) for at, name in ((args.kill_at, "kill"), (args.restart_at, "restart")) if at >= 0])
    for index in range(len(windows)):
        window_end = t0 + (index + 1) * args.window
        while faults and t0 + faults[0][0] < window_end:
            time.sleep(max(t0 + faults[0][0] - time.perf_counter(), 0))
            _, name = faults.pop(0)
            if name == "kill":
                serve_load.kill_replica_later(0).join()
                events.append(f"+{time.perf_counter() - t0:.0f} s: one Recommender replica killed")
            else:
                restart_head(str(run), target, events, t0)
        time.sleep(max(window_end - time.perf_counter(), 0))
        rss.append(rss_mb())
        print(f"# window {index}: {dict(windows[index].statuses)}", flush=True)
    for thread in threads:
        thread.join()
    target.longest_gap = max(target.longest_gap, stop_at - target.last_ok)  # an outage that lasted to the end
    missing = missing_items(target.url, acknowledged)
    print(report(windows, rss, args, events, target, acknowledged, refused, missing), flush=True)
    serve_load.stop_app()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One real local Ray cluster per test session (`ray start --head` with the job server), shared by in-process
tests (`ray.init(address=...)`) and `ray job submit` tests; small real data slices from the bundled dataset."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RAY_BIN = str(Path(sys.executable).with_name("ray"))
CLI = str(Path(sys.executable).with_name("ray-longtail"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_psutil():
    """psutil as Ray bundles it (importing ray puts ray/thirdparty_files on sys.path)."""
    import ray  # noqa: F401

    return importlib.import_module("psutil")


class LocalHead:
    """A `ray start --head` cluster on free ports; `address` for drivers, `dashboard` for `ray job submit`."""

    def __init__(self) -> None:
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"

    def start(self) -> LocalHead:
        # every listening port is a free one, so the head can start beside another Ray cluster on this machine
        ports = {flag: free_port() for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                "metrics-export-port", "runtime-env-agent-port",
                                                "node-manager-port", "object-manager-port", "ray-client-server-port")}
        self.metrics_port = ports["metrics-export-port"]  # Prometheus endpoint of the node
        cmd = [RAY_BIN, "start", "--head", f"--port={self.port}", "--num-cpus=2", "--node-ip-address=127.0.0.1",
               "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
               "--object-store-memory=400000000", "--disable-usage-stats",
               *(f"--{flag}={port}" for flag, port in ports.items())]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        return self

    def stop(self) -> None:
        """Stop this cluster only: `ray stop` would kill every Ray process on the machine, including clusters
        that other people (or other test sessions) run. Our head's processes carry its GCS port on their
        command line, the rest of the head carries its session name; workers and agents are their descendants."""
        psutil = ray_psutil()
        infos = [(p, " ".join(p.info["cmdline"] or [])) for p in psutil.process_iter(["cmdline"])]
        gcs = [c for _, c in infos if f"--gcs_server_port={self.port}" in c]
        sessions = {part.split("=", 1)[1] for c in gcs for part in c.split() if part.startswith("--session-name=")}
        roots = [p for p, c in infos if any(s in c for s in sessions)]
        procs = {p.pid: p for root in roots for p in [root, *self._children(root)]}
        for proc in procs.values():
            try:
                proc.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(list(procs.values()), timeout=5)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        self._forget_address()

    def _forget_address(self) -> None:
        """Remove Ray's record of the latest `ray start` cluster when it is this one: killed without `ray stop`,
        it stays behind, and whatever resolves the address "auto" later waits on a dead cluster."""
        record = Path("/tmp/ray/ray_current_cluster")
        try:
            if record.read_text().strip().endswith(f":{self.port}"):
                record.unlink()
        except OSError:
            pass

    @staticmethod
    def _children(proc) -> list:
        try:
            return proc.children(recursive=True)
        except ray_psutil().Error:
            return []

    def submit(self, entrypoint: list[str], timeout: float = 420) -> str:
        """`ray job submit --working-dir <repo>`; returns the job's logs, fails the test unless SUCCEEDED."""
        if entrypoint[0] == "python":  # the job driver's PATH need not hold this environment's python
            entrypoint = [sys.executable, *entrypoint[1:]]
        cmd = [RAY_BIN, "job", "submit", "--address", self.dashboard, "--working-dir", str(REPO),
               "--no-wait", "--", *entrypoint]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
        job_id = next(line.split("'")[1] for line in out.splitlines() if "submitted successfully" in line)
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(self.dashboard)
        deadline = time.time() + timeout
        status = client.get_job_status(job_id)
        while time.time() < deadline and not status.is_terminal():
            time.sleep(1)
            status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        assert status == JobStatus.SUCCEEDED, f"job {job_id} ended {status}:\n{logs[-4000:]}"
        return logs


@pytest.fixture(scope="session")
def ray_head():
    import ray

    head = LocalHead().start()
    ray.init(address=head.address, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield head
    ray.shutdown()
    head.stop()


@pytest.fixture(scope="session")
def bundled_slice(tmp_path_factory) -> tuple[str, str]:
    """A small real slice of the bundled data: 8% of users (all their interactions) and the items they touched
    plus 150 never-bought catalog items, so cold items exist."""
    import numpy as np
    import pandas as pd

    from ray_longtail.data.ingest import bundled_paths

    items_path, events_path = bundled_paths()
    items, events = pd.read_parquet(items_path), pd.read_parquet(events_path)
    users = np.sort(events["user_id"].unique())
    keep_users = set(np.random.default_rng(7).choice(users, size=int(len(users) * 0.08), replace=False))
    events = events[events["user_id"].isin(keep_users)]
    touched = set(events["item_id"])
    untouched = items[~items["item_id"].isin(touched)].head(150)
    items = pd.concat([items[items["item_id"].isin(touched)], untouched])
    out = tmp_path_factory.mktemp("slice")
    items.to_parquet(out / "items.parquet")
    events.to_parquet(out / "interactions.parquet")
    return str(out / "items.parquet"), str(out / "interactions.parquet")


def cli(args: list[str], head: LocalHead, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the real `ray-longtail` CLI as a user would, connected to the session's Ray head."""
    env = dict(os.environ, RAY_ADDRESS=head.address)
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def pipeline_run(ray_head, bundled_slice, tmp_path_factory):
    """`ray-longtail run` on the bundled slice: (args, completed process, run dir)."""
    items, events = bundled_slice
    artifacts = tmp_path_factory.mktemp("artifacts")
    args = ["run", "--items", items, "--interactions", events, "--artifacts", str(artifacts), "--run-id", "slice"]
    first = cli(args, ray_head)
    assert first.returncode == 0, first.stderr[-4000:]
    return args, first, artifacts / "slice"


RAY_FIXTURES = {"ray_head", "pipeline_run", "cli_run", "served", "s3"}


def pytest_collection_modifyitems(items):
    """The slow tier is every test that needs the session's Ray cluster, a pipeline run or the S3 server:
    `pytest -m "not slow"` runs the pure-function tier in seconds."""
    for item in items:
        if RAY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

"""Connecting to Ray: a given cluster (`ray.address`, or RAY_ADDRESS as under `ray job submit`), else a new
local instance. A new local instance is started explicitly (address="local") rather than letting `ray.init()`
join whatever cluster `/tmp/ray` last recorded: a stale record of a dead cluster makes it wait for minutes.
Use `--set ray.address=auto` to join a `ray start` cluster on this machine."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ray_longtail.config import RayConfig
from ray_longtail.embed import OFFLINE_ENV
from ray_longtail.progress import ray_data_bars

log = logging.getLogger(__name__)

RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_DEDUP_LOGS": "1"} | OFFLINE_ENV


@contextmanager
def ray_session(config: RayConfig) -> Iterator[None]:
    """Yield with Ray initialised; shut down afterwards only if this call started it."""
    import ray

    if ray.is_initialized():
        yield
        return
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    address = config.address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"logging_level": "WARNING", "log_to_driver": True}
    if address:
        ray.init(address=address, **kwargs)
    else:
        port = free_port()
        ray.init(address="local", num_cpus=config.num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=port, object_store_memory=(config.object_store_memory_mb or 0) * 1024**2 or None,
                 runtime_env={"env_vars": dict(RAY_ENV) | state_api_env(port)}, **kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = ray_data_bars()
    log.info("ray: %s", ray.cluster_resources())
    try:
        yield
    finally:
        ray.shutdown()


def state_api_env(dashboard_port: int) -> dict[str, str]:
    """Point Ray's State API at this instance's dashboard in every worker. Ray Train's PlacementGroupCleaner asks
    the State API whether the Train controller is alive; without this it resolves "auto", which reads
    /tmp/ray/ray_current_cluster: a cluster that was killed without `ray stop` (or another cluster on the machine)
    makes every check block for seconds, and every Ray Train fit then waited 12 s for the cleaner to stop
    (measured: the bundled run's rank stage alone 32-34 s instead of 22 s, bench/RESULTS.md)."""
    return {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard_port}"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

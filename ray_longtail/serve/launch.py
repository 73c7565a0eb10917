"""`ray-longtail serve`: the app of `app.py` on a local (or joined) Ray with the settings of a Serve config file
(env vars and deployment options; the packaged serve_config.yaml by default), redeployed on SIGHUP, stopped on
SIGINT/SIGTERM. `serve run` / `serve deploy` read the same file themselves.
"""

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from ray import serve

from ray_longtail.artifacts import resolve_run
from ray_longtail.errors import UserError
from ray_longtail.serve.app import APP_NAME, IMPORT_PATH, build_app, run_config
from ray_longtail.serve.http import is_loopback, token_digest

log = logging.getLogger(__name__)


def serve_config_path() -> Path:
    """The packaged serve_config.yaml (the repository root's `serve_config.yaml` links to it)."""
    return Path(__file__).resolve().parents[1] / "configs" / "serve_config.yaml"


def serve_settings(path: str | Path | None = None) -> tuple[dict[str, str], dict[str, dict[str, Any]], dict]:
    """(env_vars, deployment options by name, application args) of the ray_longtail application in a Serve
    config file (the packaged serve_config.yaml by default)."""
    import yaml

    path = Path(path) if path else serve_config_path()
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read the Serve config {path}: {exc}") from exc
    apps = [a for a in config.get("applications") or [] if a.get("import_path") == IMPORT_PATH]
    if not apps:
        raise UserError(f"{path} has no application with import_path {IMPORT_PATH}")
    app = apps[0]
    env = {str(k): str(v) for k, v in ((app.get("runtime_env") or {}).get("env_vars") or {}).items()}
    deployments = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments") or []}
    return env, deployments, dict(app.get("args") or {})


def serve_forever(run: str, host: str = "127.0.0.1", port: int = 8000, overrides: list[str] | None = None,
                  serve_config: str | None = None, allow_open_writes: bool = False) -> None:
    """`ray-longtail serve`: start (or join) Ray, run the app on http://host:port with the settings of
    `serve_config` (env vars and deployment options; the packaged serve_config.yaml by default), block until
    SIGINT/SIGTERM. The file's env vars go into this process's environment before Ray starts, so a local cluster's
    controller, HAProxy and replicas all see them (a variable already set in the environment wins); `overrides`:
    `serve.<key>=<value>` settings (`--set`). A non-loopback `host` with write endpoints open (no
    `serve.api_token_env` token set) is refused unless `allow_open_writes`."""
    from ray_longtail.config import load_config
    from ray_longtail.runtime import ray_session

    env, deployments, file_args = serve_settings(serve_config)
    for key, value in env.items():
        os.environ.setdefault(key, value)
    settings = [*(file_args.get("set") or []), *(overrides or [])]
    if not is_loopback(host) and not allow_open_writes and \
            token_digest(run_config(resolve_run(run), settings).serve.api_token_env) is None:
        raise UserError(f"refusing to serve on {host} with POST /items open to anyone: set a token "
                        "(--set serve.api_token_env=VAR with VAR set in the environment), bind to 127.0.0.1, or "
                        "pass --allow-open-writes")
    def app():
        return build_app({"run": run, "set": settings, "variants": file_args.get("variants"),
                          "encoder_options": deployments.get("Encoder"),
                          "recommender_options": deployments.get("Recommender")})

    app()  # a bad run or variant fails here, before Ray starts
    stop, reload = threading.Event(), threading.Event()
    with ray_session(load_config().ray):
        for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own SIGTERM handler
            signal.signal(sig, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: (reload.set(), stop.set()))
        serve.start(http_options={"host": host, "port": port})
        try:
            deploy_app(app(), run)
            print(f"serving on http://{host}:{port} (OpenAPI: /docs); `kill -HUP {os.getpid()}` redeploys "
                  f"{run} (re-resolved); Ctrl-C stops", flush=True)
            while stop.wait(None):
                if not reload.is_set():
                    break
                stop.clear()
                reload.clear()
                try:
                    deploy_app(app(), run)
                except UserError as exc:
                    log.error("reload refused, still serving the previous run: %s", exc)
        finally:
            serve.shutdown()


def deploy_app(app, run: str) -> None:
    """Deploy (or redeploy: Serve replaces the Recommender replicas one at a time, so the old ones answer until the
    new ones are up) the app under APP_NAME."""
    serve.run(app, name=APP_NAME, route_prefix="/", logging_config={"enable_access_log": False})
    log.info("deployed %s", resolve_run(run))

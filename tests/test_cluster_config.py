"""Deployment configs at the repo root are valid without touching a cloud or starting Ray: `cluster.yaml`
(Ray cluster launcher: our own checks, Ray's JSON schema, and the launcher's own offline prepare/validate),
`serve_config.yaml` (Serve's config schema, when the file exists) and `k8s/raycluster.yaml` (KubeRay)."""

from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster.yaml"
SERVE = REPO / "serve_config.yaml"
KUBERAY = REPO / "k8s" / "raycluster.yaml"
RAY_VERSION = md.version("ray")


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def gpu_types(cluster: dict) -> dict[str, dict]:
    return {name: t for name, t in cluster["available_node_types"].items() if t["resources"].get("GPU", 0) > 0}


def test_launcher_required_keys(cluster):
    assert isinstance(cluster["cluster_name"], str) and cluster["cluster_name"]
    assert cluster["provider"]["type"] == "aws"
    assert cluster["provider"]["region"] and isinstance(cluster["provider"]["cache_stopped_nodes"], bool)
    assert cluster["auth"]["ssh_user"]
    types = cluster["available_node_types"]
    assert cluster["head_node_type"] in types
    assert len(types) >= 3, "a head type, a GPU worker type and a CPU worker type"
    for name, node_type in types.items():
        assert isinstance(node_type["node_config"], dict) and node_type["node_config"], name
        assert isinstance(node_type["resources"], dict), name
        assert all(isinstance(v, int) and v >= 0 for v in node_type["resources"].values()), name
        low, high = node_type.get("min_workers", 0), node_type.get("max_workers", cluster["max_workers"])
        assert low == 0, f"{name}: every type scales from zero"
        assert low <= high <= cluster["max_workers"], name
    head = types[cluster["head_node_type"]]
    assert "CPU" in head["resources"] and "GPU" not in head["resources"]


def test_gpu_and_cpu_worker_types(cluster):
    head = cluster["head_node_type"]
    workers = {n: t for n, t in cluster["available_node_types"].items() if n != head}
    gpus = gpu_types(cluster)
    assert gpus, "a worker type declaring GPU resources (embed, Serve Encoder)"
    assert any(t["resources"].get("CPU", 0) > 0 and not t["resources"].get("GPU") for t in workers.values()), \
        "a CPU-only worker type (retrieve / features / rank)"
    for name, node_type in gpus.items():
        assert node_type["resources"]["CPU"] > 0, name
        assert node_type["docker"]["worker_image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu", name
        setup = "\n".join(node_type["worker_setup_commands"])
        assert "download.pytorch.org/whl/cu" in setup, f"{name}: a CUDA torch"
        assert "pip uninstall -y xgboost-cpu" in setup and "pip install -q xgboost" in setup, name
        assert "pip install -q -e /home/ray/ray_longtail" in setup, name


def test_images_commands_and_mounts(cluster):
    assert cluster["docker"]["image"] == f"rayproject/ray:{RAY_VERSION}-py311"
    mounts = cluster["file_mounts"]
    assert mounts["/home/ray/ray_longtail"] == "."
    setup = "\n".join(cluster["setup_commands"])
    assert "torch==2.13.0" in setup and "whl/cpu" in setup
    assert "pip install -q -e /home/ray/ray_longtail" in setup
    head_start = " ".join(cluster["head_start_ray_commands"])
    worker_start = " ".join(cluster["worker_start_ray_commands"])
    assert "ray start --head" in head_start and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    assert "--address=$RAY_HEAD_IP:6379" in worker_start
    for commands in (head_start, worker_start):
        assert "RAY_AUTH_MODE=token" in commands
    assert "/home/ray/.ray/auth_token" in mounts, "the token the nodes share must be mounted"


def test_ray_json_schema(cluster):
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)


def test_launcher_prepare_and_validate_offline(cluster):
    """What `ray up` does before its first cloud call: merge provider defaults, check docker and node types."""
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(json.loads(json.dumps(cluster)))
    validate_config(prepared)
    assert prepared["head_node_type"] == cluster["head_node_type"]
    assert set(prepared["available_node_types"]) == set(cluster["available_node_types"])


@pytest.mark.skipif(not SERVE.exists(), reason="serve_config.yaml not written yet")
def test_serve_config():
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(SERVE.read_text())
    parsed = ServeDeploySchema.model_validate(config) if hasattr(ServeDeploySchema, "model_validate") \
        else ServeDeploySchema.parse_obj(config)
    assert parsed.applications, "at least one application"
    apps = config["applications"]
    assert any(app["import_path"] == "ray_longtail.serve.app:build_app" for app in apps)
    for app in apps:
        if app["import_path"] == "ray_longtail.serve.app:build_app":
            assert "run" in (app.get("args") or {}), "args.run: the run dir or URI to serve"
    assert config.get("http_options", {}).get("host", "127.0.0.1") == "127.0.0.1", "bind to localhost by default"


def test_kuberay_manifest():
    if not KUBERAY.exists():
        pytest.skip("no k8s/raycluster.yaml")
    manifest = yaml.safe_load(KUBERAY.read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayCluster"
    spec = manifest["spec"]
    assert spec["rayVersion"] == RAY_VERSION and spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = spec["workerGroupSpecs"]
    gpu_groups = []
    for group in groups:
        assert 0 == group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        (container,) = group["template"]["spec"]["containers"]
        if "nvidia.com/gpu" in container["resources"]["limits"]:
            gpu_groups.append(group["groupName"])
        names = {e["name"] for e in container["env"]}
        assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} <= names
    assert gpu_groups and len(gpu_groups) < len(groups), "GPU and CPU worker groups"

"""The real CLI and `ray job submit` on small slices of the bundled data, against the session's Ray head."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ray_longtail.artifacts import RunStore

RUN_ARTIFACTS = ["manifest.json", "ingest_report.json", "catalog.parquet", "interactions.parquet",
                 "split/train.parquet", "split/valid.parquet", "split/test.parquet", "item_embeddings.parquet"]
CLI = str(Path(sys.executable).with_name("ray-longtail"))


def cli(args, head, **kwargs):
    env = dict(os.environ, RAY_ADDRESS=head.address)
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=900, **kwargs)


@pytest.fixture(scope="module")
def cli_run(ray_head, bundled_slice, tmp_path_factory):
    items, events = bundled_slice
    artifacts = tmp_path_factory.mktemp("artifacts")
    args = ["run", "--items", items, "--interactions", events, "--artifacts", str(artifacts), "--run-id", "slice"]
    first = cli(args, ray_head)
    assert first.returncode == 0, first.stderr[-4000:]
    return args, first, artifacts / "slice"


def test_run_writes_every_artifact_and_prints_the_run_dir_last(cli_run):
    _, first, run_dir = cli_run
    assert first.stdout.strip().splitlines()[-1] == str(run_dir)
    for name in RUN_ARTIFACTS:
        assert (run_dir / name).exists(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["data"]["items"].endswith("items.parquet")
    assert manifest["inputs"]["items"]["bytes"] > 0 and manifest["versions"]["ray"]
    assert set(manifest["stages"]) >= {"ingest", "split", "embed"}
    assert not list(run_dir.rglob("*.tmp-*"))


def test_rerun_skips_finished_stages(cli_run, ray_head):
    args, _, run_dir = cli_run
    before = (run_dir / "item_embeddings.parquet").stat().st_mtime_ns
    second = cli(args, ray_head)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "stage embed     skipped" in second.stderr and "stage ingest    skipped" in second.stderr
    assert (run_dir / "item_embeddings.parquet").stat().st_mtime_ns == before


def test_user_errors_exit_nonzero_without_traceback(ray_head, tmp_path):
    bad = cli(["ingest", "--items", str(tmp_path / "missing.parquet"), "--interactions", "x.csv",
               "--artifacts", str(tmp_path)], ray_head)
    assert bad.returncode == 2 and "missing.parquet" in bad.stderr and "Traceback" not in bad.stderr
    bad_key = cli(["ingest", "--set", "embed.nope=1", "--artifacts", str(tmp_path)], ray_head)
    assert bad_key.returncode == 2 and "embed.nope" in bad_key.stderr


def test_embed_job_via_ray_job_submit(ray_head, bundled_slice, tmp_path):
    items, events = bundled_slice
    logs = ray_head.submit(["python", "jobs/embed_items.py", "--items", items, "--interactions", events,
                            "--artifacts", str(tmp_path), "--run-id", "job", "--set", "embed.block_size=256"])
    assert logs.strip().splitlines()[-1] == str(tmp_path / "job")
    store = RunStore(str(tmp_path), "job")
    embeddings = store.read_arrow("item_embeddings.parquet")
    assert embeddings.num_rows == len(store.read_table("catalog.parquet")) > 100

"""Artifacts and inputs on an S3-protocol server: a real `moto_server` on a free localhost port, reached through
pyarrow's S3 filesystem exactly as a user's `--artifacts s3://bucket/prefix?endpoint_override=...` would be.

Covers RunStore (tables, JSON, bytes, folders, atomic publishing, failed writes, the run URI), ingest's
`read_table` (Parquet, CSV and a folder of Parquet parts), and the pipeline's ingest + split stages writing their
run folder to S3 and skipping on a rerun (no Ray), and the Recommender serving a finished run (the session's
`pipeline_run`, copied to S3) from its s3:// URI."""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from ray_longtail import artifacts
from ray_longtail.artifacts import RunStore, join_uri
from ray_longtail.config import load_config
from ray_longtail.data.ingest import bundled_paths, read_table
from ray_longtail.errors import DataError, StorageError

BUCKET = "longtail"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """A moto S3 server subprocess; `uri(key)` gives pyarrow URIs that reach it."""

    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        binary = Path(sys.executable).with_name("moto_server")
        command = [str(binary)] if binary.exists() else [sys.executable, "-m", "moto.server"]
        self.log = open(log_path, "wb")  # closed in stop()
        self.process = subprocess.Popen([*command, "-p", str(self.port), "-H", "127.0.0.1"],
                                        stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS})
        self.log_path = log_path

    def wait(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.endpoint}/", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not answer in {timeout}s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(endpoint_override=self.endpoint, scheme="http", access_key="testing",
                                 secret_key="testing", region="us-east-1", allow_bucket_creation=True)

    def uri(self, key: str) -> str:
        return f"s3://{BUCKET}/{key}?endpoint_override={self.endpoint}&scheme=http"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        server.wait()
        server.filesystem().create_dir(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """Credentials for the URIs (pyarrow reads them from the environment, as on a real deployment)."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def data_slice() -> tuple[pd.DataFrame, pd.DataFrame]:
    """About 2000 real interactions drawn across the whole time span of the bundled data, and their items."""
    items_path, events_path = bundled_paths()
    events = pd.read_parquet(events_path)
    rows = np.sort(np.random.default_rng(3).choice(len(events), size=2000, replace=False))
    events = events.iloc[rows].reset_index(drop=True)
    items = pd.read_parquet(items_path)
    items = items[items["item_id"].isin(set(events["item_id"]))].reset_index(drop=True)
    return items, events


@pytest.fixture(scope="module")
def s3_inputs(s3, data_slice, tmp_path_factory) -> dict[str, str]:
    """The slice uploaded as Parquet and CSV (and the same files kept locally for comparison)."""
    items, events = data_slice
    local = tmp_path_factory.mktemp("inputs")
    fs = s3.filesystem()
    out: dict[str, str] = {}
    for name, frame in (("items", items), ("interactions", events)):
        for ext in ("parquet", "csv"):
            path = local / f"{name}.{ext}"
            frame.to_parquet(path, index=False) if ext == "parquet" else frame.to_csv(path, index=False)
            with fs.open_output_stream(f"{BUCKET}/inputs/{name}.{ext}") as sink:
                sink.write(path.read_bytes())
            out[f"{name}.{ext}"] = s3.uri(f"inputs/{name}.{ext}")
            out[f"local:{name}.{ext}"] = str(path)
    return out


def new_store(s3: S3Server, run_id: str | None = None) -> RunStore:
    return RunStore(s3.uri(f"runs-{uuid.uuid4().hex[:6]}"), run_id or "run1")


def files_under(store: RunStore) -> list[str]:
    infos = store.fs.get_file_info(pafs.FileSelector(store.root, recursive=True))
    return sorted(posix_rel(i.path, store.root) for i in infos if i.type == pafs.FileType.File)


def posix_rel(path: str, root: str) -> str:
    return path[len(root):].lstrip("/")


# ---------------------------------------------------------------------------------------------------- run URI


@pytest.mark.parametrize(("base", "parts", "expected"), [
    ("s3://b/pre?endpoint_override=127.0.0.1:9000&scheme=http", ("run1",),
     "s3://b/pre/run1?endpoint_override=127.0.0.1:9000&scheme=http"),
    ("s3://b/pre/?scheme=http", ("run1", "split/cuts.json"), "s3://b/pre/run1/split/cuts.json?scheme=http"),
    ("s3://b", ("run1",), "s3://b/run1"),
    ("gs://b/a/", ("run1",), "gs://b/a/run1"),
    ("file:///tmp/arts", ("run1",), "file:///tmp/arts/run1"),
    ("/tmp/arts", ("run1",), "/tmp/arts/run1"),
])
def test_join_uri(base, parts, expected):
    assert join_uri(base, *parts) == expected


def test_store_uri_is_the_run_folder(s3):
    with_slash = s3.uri("uri-check/")  # s3://longtail/uri-check/?endpoint_override=...&scheme=http
    store = RunStore(with_slash, "run7")
    assert store.uri == s3.uri("uri-check/run7")
    assert store.root == f"{BUCKET}/uri-check/run7"
    store.write_json("manifest.json", {"run_id": "run7"})
    fs, path = pafs.FileSystem.from_uri(join_uri(store.uri, "manifest.json"))
    with fs.open_input_stream(path) as src:
        assert b'"run7"' in src.read()
    # A store opened on the run URI's parent again sees the same run.
    again = RunStore(s3.uri("uri-check"), "run7")
    assert again.uri == store.uri and again.read_json("manifest.json") == {"run_id": "run7"}


def test_store_uri_local_path_unchanged(tmp_path):
    store = RunStore(str(tmp_path / "arts"), "r")
    assert store.uri == store.root == str(tmp_path / "arts" / "r")


# ---------------------------------------------------------------------------------------------------- RunStore


def test_tables_json_bytes_roundtrip(s3):
    store = new_store(s3)
    frame = pd.DataFrame({"item_id": ["a", "b", "c"], "score": [0.5, 0.25, np.nan], "n": [1, 2, 3]})
    store.write_table("catalog.parquet", frame)
    store.write_table("split/train.parquet", pa.Table.from_pandas(frame, preserve_index=False))
    store.write_json("report.json", {"rows": np.int64(3), "share": np.float32(0.5), "ids": np.array([1, 2])})
    store.write_bytes("blob.bin", bytes(range(256)) * 100)
    store.write_text("report.md", "# report\n")

    pd.testing.assert_frame_equal(store.read_table("catalog.parquet"), frame)
    pd.testing.assert_frame_equal(store.read_table("split/train.parquet"), frame)
    assert store.read_arrow("catalog.parquet", columns=["n"]).column_names == ["n"]
    assert store.read_json("report.json") == {"rows": 3, "share": 0.5, "ids": [1, 2]}
    assert store.read_bytes("blob.bin") == bytes(range(256)) * 100
    assert store.read_bytes("report.md") == b"# report\n"
    for name in ("catalog.parquet", "split/train.parquet", "report.json", "blob.bin", "report.md", "split"):
        assert store.exists(name), name
    assert not store.exists("missing.parquet") and not store.exists("split/valid.parquet")
    # Every write went through a temp name, and none is left behind.
    assert files_under(store) == ["blob.bin", "catalog.parquet", "report.json", "report.md", "split/train.parquet"]


def test_overwrite_and_manifest(s3):
    store = new_store(s3)
    store.write_json("x.json", {"v": 1})
    store.write_json("x.json", {"v": 2})
    assert store.read_json("x.json") == {"v": 2}
    assert store.manifest() == {"run_id": "run1", "stages": {}}
    store.update_manifest(stages={"ingest": {"seconds": 1.0}})
    store.update_manifest(stages={"split": {"seconds": 2.0}}, run_id="run1")
    assert store.manifest()["stages"] == {"ingest": {"seconds": 1.0}, "split": {"seconds": 2.0}}
    assert not [f for f in files_under(store) if ".tmp-" in f]


def test_upload_and_download_dir(s3, tmp_path):
    source = tmp_path / "ranker"
    (source / "checkpoint" / "sub").mkdir(parents=True)
    (source / "model.ubj").write_bytes(b"\x00booster\xff" * 1000)
    (source / "checkpoint" / "features.json").write_text('["a", "b"]')
    (source / "checkpoint" / "sub" / "empty.txt").write_bytes(b"")
    store = new_store(s3)
    assert not store.dir_complete("ranker")
    store.upload_dir("ranker", source)
    assert store.dir_complete("ranker") and store.exists("ranker/model.ubj")
    assert files_under(store) == ["ranker/_SUCCESS", "ranker/checkpoint/features.json",
                                  "ranker/checkpoint/sub/empty.txt", "ranker/model.ubj"]

    target = store.download_dir("ranker", tmp_path / "back")
    assert target == tmp_path / "back"
    for rel in ("model.ubj", "checkpoint/features.json", "checkpoint/sub/empty.txt"):
        assert (target / rel).read_bytes() == (source / rel).read_bytes(), rel
    assert (target / "_SUCCESS").exists()
    default = store.download_dir("ranker")
    try:
        assert (default / "model.ubj").read_bytes() == (source / "model.ubj").read_bytes()
    finally:
        shutil.rmtree(default)


def test_failed_serialization_publishes_nothing(s3, monkeypatch):
    """A table whose serialization dies half way: no object under the final name, the old version intact."""
    store = new_store(s3)
    good = pd.DataFrame({"item_id": ["a"], "v": [1.0]})
    store.write_table("old.parquet", good)

    def broken_write_table(table, sink, **kwargs):
        sink.write(b"PAR1 half a file")
        raise RuntimeError("simulated crash inside serialization")

    with monkeypatch.context() as patch:
        patch.setattr(artifacts.pq, "write_table", broken_write_table)
        with pytest.raises(RuntimeError, match="simulated crash"):
            store.write_table("new.parquet", good)
        with pytest.raises(RuntimeError, match="simulated crash"):
            store.write_table("old.parquet", pd.DataFrame({"item_id": ["b"], "v": [2.0]}))
    assert not store.exists("new.parquet")
    pd.testing.assert_frame_equal(store.read_table("old.parquet"), good)
    assert files_under(store) == ["old.parquet"]


class _BreakingStream:
    """An output stream that writes half the data, then fails like a dropped connection."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()  # what pyarrow's own context manager does: commits what was written
        return False

    def write(self, data):
        self.stream.write(data[: len(data) // 2])
        raise OSError("simulated connection reset during upload")


class _FlakyFS:
    """Wraps the store's S3 filesystem; fails uploads mid-stream ("write") or the final rename ("move")."""

    def __init__(self, fs, fail: str):
        self._fs, self.fail = fs, fail

    def __getattr__(self, name):
        return getattr(self._fs, name)

    def open_output_stream(self, path, *args, **kwargs):
        stream = self._fs.open_output_stream(path, *args, **kwargs)
        return _BreakingStream(stream) if self.fail == "write" else stream

    def move(self, src, dest):
        if self.fail == "move":
            raise OSError("simulated failure of the rename")
        return self._fs.move(src, dest)


@pytest.mark.parametrize("fail", ["write", "move"])
def test_failed_upload_publishes_nothing(s3, fail):
    store = new_store(s3)
    store.write_json("cuts.json", {"cut_test": 1})
    real_fs = store.fs
    store.fs = _FlakyFS(real_fs, fail)
    with pytest.raises(StorageError, match="cannot write metrics.json to s3://.*simulated"):
        store.write_json("metrics.json", {"recall@10": 0.1})
    with pytest.raises(StorageError, match="simulated"):
        store.write_json("cuts.json", {"cut_test": 2})
    store.fs = real_fs
    assert not store.exists("metrics.json")
    assert store.read_json("cuts.json") == {"cut_test": 1}
    assert files_under(store) == ["cuts.json"], "neither the final name nor a temp object remains"


# ---------------------------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("name", ["items", "interactions"])
def test_read_table_parquet_and_csv_from_s3(s3_inputs, data_slice, name):
    expected = data_slice[0] if name == "items" else data_slice[1]
    from_parquet = read_table(s3_inputs[f"{name}.parquet"])
    from_csv = read_table(s3_inputs[f"{name}.csv"])
    pd.testing.assert_frame_equal(from_parquet, read_table(s3_inputs[f"local:{name}.parquet"]))
    pd.testing.assert_frame_equal(from_csv, read_table(s3_inputs[f"local:{name}.csv"]))
    for frame in (from_parquet, from_csv):
        assert len(frame) == len(expected)
        assert list(frame["item_id"]) == list(expected["item_id"])
        assert pd.api.types.is_string_dtype(frame["item_id"])
    if name == "interactions":
        assert list(from_csv["user_id"]) == list(expected["user_id"].astype(str))
        assert (from_csv["timestamp"].to_numpy() == expected["timestamp"].to_numpy()).all()


def test_read_table_folder_and_missing_file(s3, data_slice):
    _, events = data_slice
    fs = s3.filesystem()
    for part, chunk in enumerate((events.iloc[:1000], events.iloc[1000:])):
        sink = io.BytesIO()
        chunk.to_parquet(sink, index=False)
        with fs.open_output_stream(f"{BUCKET}/parts/interactions/part-{part}.parquet") as out:
            out.write(sink.getvalue())
    frame = read_table(s3.uri("parts/interactions"))
    assert len(frame) == len(events) and set(frame["item_id"]) == set(events["item_id"])
    with pytest.raises(DataError, match="file not found"):
        read_table(s3.uri("inputs/nope.parquet"))


# ---------------------------------------------------------------------------------------------------- pipeline


def test_pipeline_ingest_and_split_on_s3(s3, s3_inputs, caplog):
    from ray_longtail.pipeline import run_stages

    artifacts_uri = s3.uri("pipeline-artifacts")
    config = load_config(extra={"artifacts": artifacts_uri,
                                "data": {"items": s3_inputs["items.parquet"],
                                         "interactions": s3_inputs["interactions.parquet"]}})
    with caplog.at_level(logging.INFO, logger="ray_longtail.pipeline"):
        store = run_stages(config, until="split")
    assert "stage ingest    running" in caplog.text and "stage split     running" in caplog.text
    assert store.uri == join_uri(artifacts_uri, store.run_id)
    outputs = ["manifest.json", "catalog.parquet", "interactions.parquet", "ingest_report.json",
               "split/train.parquet", "split/valid.parquet", "split/test.parquet", "split/cuts.json"]
    assert sorted(files_under(store)) == sorted(outputs)

    report = store.read_json("ingest_report.json")
    assert report["interactions"]["rows_in"] == 2000
    events = store.read_table("interactions.parquet")
    assert report["interactions"]["rows_out"] == len(events) > 1500
    parts = {name: store.read_table(f"split/{name}.parquet") for name in ("train", "valid", "test")}
    assert sum(len(p) for p in parts.values()) == len(events)
    cuts = store.read_json("split/cuts.json")
    assert parts["train"]["timestamp"].max() < cuts["cut_valid"] <= parts["valid"]["timestamp"].min()
    assert parts["valid"]["timestamp"].max() < cuts["cut_test"] <= parts["test"]["timestamp"].min()

    manifest = store.manifest()
    assert manifest["inputs"]["items"]["uri"] == s3_inputs["items.parquet"]
    assert manifest["config"]["artifacts"] == artifacts_uri
    finished = {name: manifest["stages"][name]["finished"] for name in ("ingest", "split")}

    # The run folder is reachable through its URI alone (what the CLI prints and `serve --run` takes).
    fs, path = pafs.FileSystem.from_uri(join_uri(store.uri, "split", "cuts.json"))
    with fs.open_input_stream(path) as src:
        assert src.read() == store.read_bytes("split/cuts.json")

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ray_longtail.pipeline"):
        again = run_stages(config, until="split")
    assert again.run_id == store.run_id
    assert "stage ingest    skipped" in caplog.text and "stage split     skipped" in caplog.text
    assert "running" not in caplog.text
    assert {name: again.manifest()["stages"][name]["finished"] for name in finished} == finished
    assert sorted(files_under(again)) == sorted(outputs)


def test_recommender_serves_a_run_from_s3(s3, pipeline_run):
    """The Recommender (what Serve's Recommender deployment wraps) loads a finished run through its s3:// URI,
    `<prefix>/latest` included, and answers known users with exactly the run's batch recommendations."""
    from ray_longtail.artifacts import resolve_run
    from ray_longtail.serve.recommender import Recommender

    _, _, run_dir = pipeline_run
    pafs.copy_files(str(run_dir), f"{BUCKET}/served/slice", destination_filesystem=s3.filesystem())
    uri = resolve_run(s3.uri("served/latest"))
    assert uri == s3.uri("served/slice")
    recommender = Recommender(uri)
    assert recommender.store.uri == uri
    recs = pd.read_parquet(run_dir / "recommendations.parquet")
    for user in recs["user_id"].drop_duplicates().sample(5, random_state=1):
        expected = recs[recs["user_id"] == user].sort_values("rank")["item_id"].tolist()
        answer = recommender.recommend(str(user), k=len(expected))
        assert [item["item_id"] for item in answer["items"]] == expected, user

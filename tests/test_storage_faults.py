"""Batch faults at the storage layer: an artifacts location that is full or cannot be created gives one clear
`StorageError`, nothing half-written appears under an artifact's name, a run is never marked finished
(metrics.json) when a later write of its last stage failed, and a rerun after the fault produces the same
artifacts as a run that never failed. The fault is injected from here: a filesystem whose writes fail with
ENOSPC once a chosen artifact is reached (the production code is not told)."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
from fsspec.implementations.local import LocalFileSystem as FsspecLocal

from ray_longtail import artifacts
from ray_longtail.config import load_config
from ray_longtail.data.ingest import bundled_paths
from ray_longtail.errors import StorageError
from ray_longtail.pipeline import run_stages


class FullDisk(pafs.FSSpecHandler):
    """Local files, except that opening a file for writing whose path contains one of `full_at` fails as a full
    disk does (the temp file of an atomic write is named after its artifact)."""

    def __init__(self, full_at: tuple[str, ...]):
        super().__init__(FsspecLocal())
        self.full_at = full_at

    def open_output_stream(self, path, metadata):
        if any(marker in path for marker in self.full_at):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return super().open_output_stream(path, metadata)


@pytest.fixture
def disk_full_at(monkeypatch):
    """Call with artifact names: from then on, writing them fails with ENOSPC."""

    def install(*names: str) -> None:
        fs = pafs.PyFileSystem(FullDisk(names))
        monkeypatch.setattr(artifacts, "resolve_filesystem",
                            lambda uri: (fs, str(Path(uri).expanduser().absolute())))

    return install


def split_config(artifacts_dir: Path):
    items, events = bundled_paths()
    return load_config(overrides=[f"data.items={items}", f"data.interactions={events}",
                                  f"artifacts={artifacts_dir}", "run_id=faults"])


def leftovers(run_dir: Path) -> list[str]:
    return [str(p) for p in run_dir.rglob("*.tmp-*")]


def test_a_full_disk_is_one_clear_error_and_a_rerun_gives_the_same_artifacts(tmp_path, disk_full_at):
    clean = run_stages(split_config(tmp_path / "clean"), until="split")
    disk_full_at("split/valid.parquet")
    with pytest.raises(StorageError, match=r"cannot write split/valid\.parquet to .*No space left on device") as info:
        run_stages(split_config(tmp_path / "faulty"), until="split")
    assert "run again" in str(info.value)
    run_dir = tmp_path / "faulty" / "faults"
    assert not leftovers(run_dir) and not (run_dir / "split" / "valid.parquet").exists()
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert "ingest" in stages and "split" not in stages

    disk_full_at()  # space freed
    run_stages(split_config(tmp_path / "faulty"), until="split")
    for name in ("catalog.parquet", "interactions.parquet", "split/train.parquet", "split/valid.parquet",
                 "split/test.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(run_dir / name), pd.read_parquet(Path(clean.root) / name))
    assert json.loads((run_dir / "split" / "cuts.json").read_text()) == \
        json.loads((Path(clean.root) / "split" / "cuts.json").read_text())


def test_an_artifacts_location_that_cannot_be_created_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create the run folder .*--artifacts"):
        run_stages(split_config(blocker / "artifacts"), until="ingest")


def test_a_failed_write_in_the_last_stage_leaves_the_run_unfinished(pipeline_run, tmp_path, disk_full_at):
    """The report's plots fail to write: no metrics.json (the Serve app and `latest` refuse the run); with space
    again, a rerun of evaluate writes exactly the metrics the uninterrupted run wrote."""
    _, _, source = pipeline_run
    run_dir = tmp_path / source.name
    shutil.copytree(source, run_dir)
    for name in ("metrics.json", "recommendations.parquet", "report.md"):
        (run_dir / name).unlink()
    manifest = json.loads((source / "manifest.json").read_text())
    config = load_config(extra=manifest["config"], overrides=[f"artifacts={tmp_path}", f"run_id={source.name}"])
    disk_full_at("plots/recall_by_segment.png")
    with pytest.raises(StorageError, match="plots/recall_by_segment.png"):
        run_stages(config, only=["evaluate"])
    assert not (run_dir / "metrics.json").exists() and not leftovers(run_dir)

    disk_full_at()
    run_stages(config, only=["evaluate"])
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads((source / "metrics.json").read_text())

"""Run directories on any pyarrow filesystem (local path, s3://, gs://) with atomic writes.

Every artifact is written under a temporary name and renamed into place, so a stage that dies leaves no half
artifact; a stage is "done" when all its outputs exist. `manifest.json` records config, versions, input
fingerprints and stage timings.
"""

from __future__ import annotations

import io
import json
import pickle
import posixpath
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ray_longtail.errors import DataError, StorageError, UserError

MANIFEST = "manifest.json"
CANDIDATES = {"eval": "candidates.parquet", "fit": "fit/candidates.parquet"}  # per phase, ids form
FEATURES = {"eval": "features.parquet", "fit": "fit/features.parquet"}  # per phase, index form
FEATURE_NAMES = "feature_names.json"
SOURCES_ARTIFACT = "sources/eval.pkl"  # the sources fitted on the eval history (what serving loads)
SELECTION = "ranker/selection.json"
SERVING_LISTS = "serving/ranked.parquet"  # ranked candidates of history users (precompute.py)
EXPOSURE_PATHS = "serving/exposure.npz"  # the re-ranker's exposure path per tail_weight (precompute.py)
FEEDBACK = "feedback/interactions.parquet"  # events folded into the eval history by `refresh` (feedback.py)
ADDED = "added_items"  # items added at serving time, one Parquet file per request
LATEST = "latest"
DEFAULT_ARTIFACTS = "artifacts"
REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """`uri` (local path or URI) -> (filesystem, path inside it). Local paths are made absolute."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().absolute())
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path


def join_uri(base: str, *parts: str) -> str:
    """Append path parts to a local path or URI, keeping a URI's query (`?endpoint_override=...`) at the end:
    `join_uri("s3://b/pre?scheme=http", "run")` -> `"s3://b/pre/run?scheme=http"`."""
    if "://" not in base:
        return posixpath.join(base, *parts)
    scheme, netloc, path, query, fragment = urlsplit(base)
    path = "/".join([path.rstrip("/"), *(p.strip("/") for p in parts)])
    return urlunsplit((scheme, netloc, path, query, fragment))


class RunStore:
    """One run's folder `<artifacts>/<run_id>/` with atomic reads/writes of tables, JSON and files."""

    def __init__(self, artifacts: str, run_id: str):
        self.artifacts = artifacts
        self.run_id = run_id
        self.fs, root = resolve_filesystem(artifacts)
        self.root = posixpath.join(root, run_id)
        self.uri = join_uri(artifacts, run_id) if "://" in artifacts else self.root
        try:
            self.fs.create_dir(self.root, recursive=True)
        except OSError as exc:
            raise StorageError(f"cannot create the run folder {self.uri}: {exc}; choose a writable artifacts "
                               "location (--artifacts)") from exc

    def path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(self.path(name)).type != pafs.FileType.NotFound

    @contextmanager
    def writer(self, name: str) -> Iterator[pa.NativeFile]:
        """A stream to write artifact `name` to; it appears under its name only when the block exits cleanly."""
        final = self.path(name)
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.fs.create_dir(posixpath.dirname(final), recursive=True)
            with self.fs.open_output_stream(tmp) as out:
                yield out
            self.fs.move(tmp, final)
        except OSError as exc:
            self._discard(tmp)
            raise StorageError(f"cannot write {name} to {self.uri}: {exc}. Nothing half-written was kept; once the "
                               "location takes writes again (permissions, space, connection), run again: finished "
                               "stages are kept") from exc
        except BaseException:
            self._discard(tmp)
            raise

    def _publish(self, name: str, data: bytes) -> None:
        with self.writer(name) as out:
            out.write(data)

    def _discard(self, path: str) -> None:
        """Best-effort removal of a temp object left by a failed write (closing the stream may have committed it)."""
        try:
            if self.fs.get_file_info(path).type == pafs.FileType.File:
                self.fs.delete_file(path)
        except OSError:
            pass

    def write_bytes(self, name: str, data: bytes) -> None:
        self._publish(name, data)

    def read_bytes(self, name: str) -> bytes:
        with self.fs.open_input_stream(self.path(name)) as src:
            return src.read()

    def write_pickle(self, name: str, obj: Any) -> None:
        """Pickle `obj` straight into the artifact (no in-memory copy of the bytes: fitted sources of a
        10^6-item catalog are gigabytes)."""
        with self.writer(name) as out:
            pickle.dump(obj, out, protocol=pickle.HIGHEST_PROTOCOL)

    def read_pickle(self, name: str) -> Any:
        with self.fs.open_input_file(self.path(name)) as src:
            return pickle.load(src)

    def write_table(self, name: str, table: pd.DataFrame | pa.Table) -> None:
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        self._publish(name, sink.getvalue())

    def read_arrow(self, name: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open_input_file(self.path(name)) as src:
            return pq.read_table(src, columns=columns)

    def read_table(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read_arrow(name, columns).to_pandas()

    def write_json(self, name: str, obj: Any) -> None:
        self._publish(name, json.dumps(obj, indent=2, sort_keys=False, default=_json_default).encode())

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def write_text(self, name: str, text: str) -> None:
        self._publish(name, text.encode())

    def upload_dir(self, name: str, local_dir: str | Path) -> None:
        """Copy a local folder to `<run>/<name>/` (files published one by one, then a `_SUCCESS` marker)."""
        local_dir = Path(local_dir)
        for file in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            self._publish(posixpath.join(name, file.relative_to(local_dir).as_posix()), file.read_bytes())
        self._publish(posixpath.join(name, "_SUCCESS"), b"")

    def download_dir(self, name: str, local_dir: str | Path | None = None) -> Path:
        """Copy `<run>/<name>/` to a local folder (a temp dir by default) and return it."""
        target = Path(local_dir or tempfile.mkdtemp(prefix="ray_longtail_"))
        base = self.path(name)
        for info in self.fs.get_file_info(pafs.FileSelector(base, recursive=True)):
            if info.type != pafs.FileType.File:
                continue
            rel = posixpath.relpath(info.path, base)
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open_input_stream(info.path) as src:
                dest.write_bytes(src.read())
        return target

    def listing(self, folder: str, suffix: str = "") -> list[str]:
        """Sorted names of the files directly in `<run>/<folder>/` ending with `suffix` (none: empty)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(folder), allow_not_found=True))
        return sorted(posixpath.basename(i.path) for i in infos
                      if i.type == pafs.FileType.File and i.path.endswith(suffix))

    def dir_complete(self, name: str) -> bool:
        return self.exists(posixpath.join(name, "_SUCCESS"))

    def manifest(self) -> dict[str, Any]:
        return self.read_json(MANIFEST) if self.exists(MANIFEST) else {"run_id": self.run_id, "stages": {}}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = self.manifest()
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(manifest.get(key), dict):
                manifest[key].update(value)
            else:
                manifest[key] = value
        self.write_json(MANIFEST, manifest)
        return manifest


def _json_default(obj: Any) -> Any:
    if getattr(obj, "ndim", 0) and hasattr(obj, "tolist"):  # numpy arrays, pandas Series (`.item()` fails on them)
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def file_fingerprint(uri: str) -> dict[str, Any]:
    """Size and a cheap content hash (first and last MiB + size) of an input file, for the manifest."""
    import hashlib

    fs, path = resolve_filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{uri}: file not found")
    if info.type == pafs.FileType.Directory:
        return {"uri": uri, "bytes": None, "sha256_sampled": _dir_digest(fs, path)}
    digest = hashlib.sha256()
    with fs.open_input_file(path) as src:
        size = src.size()
        digest.update(src.read(1 << 20))
        if size > 2 << 20:
            src.seek(size - (1 << 20))
            digest.update(src.read(1 << 20))
    digest.update(str(size).encode())
    return {"uri": uri, "bytes": int(info.size or size), "sha256_sampled": digest.hexdigest()}


def _dir_digest(fs: pafs.FileSystem, path: str) -> str:
    """Digest of a folder input (a partitioned dataset) from its files' names, sizes and mtimes."""
    import hashlib

    infos = sorted(fs.get_file_info(pafs.FileSelector(path, recursive=True)), key=lambda i: i.path)
    listing = [(i.path, i.size, str(i.mtime)) for i in infos if i.type == pafs.FileType.File]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def candidates_artifact(phase: str) -> str:
    """The long candidate table of a phase ("eval", "fit", or an earlier fold "fit1", "fit2", ...)."""
    return CANDIDATES.get(phase, f"{phase}/candidates.parquet")


def features_artifact(phase: str) -> str:
    """The feature rows of a phase's candidate union."""
    return FEATURES.get(phase, f"{phase}/features.parquet")


def split_uri(uri: str) -> tuple[str, str]:
    """A folder path or URI -> (its parent, keeping a URI's ?query options, its name): what RunStore takes."""
    base, sep, query = str(uri).partition("?")
    base = base.rstrip("/")
    parent, name = base.rsplit("/", 1) if "/" in base else (".", base)
    return parent + sep + query, name


def open_run_store(run: str) -> RunStore:
    """A run folder path or URI (an s3:// URI may carry ?query options) -> its RunStore."""
    store = RunStore(*split_uri(run))
    if not store.exists(MANIFEST):
        raise UserError(f"{run} is not a ray_longtail run folder (no manifest.json)")
    return store


def resolve_run(run: str) -> str:
    """A run folder or URI as given by the user -> an absolute path or URI of a run folder.

    `latest` = `artifacts/latest`; `<dir>/latest` (when no run is literally named `latest`) = the run under
    `<dir>` whose metrics.json is newest. A relative local path is looked up from the current directory, then
    from the repository root (so `serve run serve_config.yaml` finds `artifacts/` wherever Ray starts replicas).
    """
    run = str(run).strip()
    if not run:
        raise UserError("run must name a run folder, a URI or 'latest'")
    if run == LATEST:
        run = f"{DEFAULT_ARTIFACTS}/{LATEST}"
    base, sep, query = run.partition("?")
    base = base.rstrip("/")
    if "://" not in base:
        base = str(_local_run_path(Path(base).expanduser()))
    fs, root = resolve_filesystem(base + sep + query)
    if posixpath.basename(root) != LATEST or fs.get_file_info(posixpath.join(root, MANIFEST)).type == \
            pafs.FileType.File:
        return base + sep + query
    parent_uri = base.rsplit("/", 1)[0]
    finished = []
    for info in fs.get_file_info(pafs.FileSelector(posixpath.dirname(root), allow_not_found=True)):
        metrics = fs.get_file_info(posixpath.join(info.path, "metrics.json"))
        if info.type == pafs.FileType.Directory and metrics.type == pafs.FileType.File:
            finished.append((metrics.mtime_ns or 0, posixpath.basename(info.path)))
    if not finished:
        raise UserError(f"no finished run (a folder with metrics.json) under {parent_uri}: "
                        "run `ray-longtail run` first or give --run DIR")
    return join_uri(parent_uri + sep + query, max(finished)[1])


def _local_run_path(path: Path) -> Path:
    """A local run path made absolute: relative paths from the current directory, else the repository root."""
    if path.is_absolute():
        return path.absolute()
    roots = [Path.cwd(), REPO_ROOT]
    found = [r / path for r in roots if (r / path).exists() or (path.name == LATEST and (r / path).parent.is_dir())]
    return (found[0] if found else Path.cwd() / path).absolute()

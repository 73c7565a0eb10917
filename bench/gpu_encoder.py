"""The serving Encoder's work on a GPU (fp16, bf16, fp32) against its CPU runtimes, without Ray: one prepared
check that fits a lent GPU machine's single call.

    python bench/gpu_encoder.py pack [--out .gpu]                      # here: texts, fp32 reference, fp16 weights
    python bench/gpu_encoder.py measure [--pack .gpu] [--out DIR]      # there (or here: CPU rows only)

Why without Ray: the lent GPU machines cannot fetch packages and take at most 64 MiB per call; the Ray 2.60 wheel
alone is 79 MB (and the MiniLM-L6 fp32 weights 87 MB), so a Ray Serve app cannot be installed there in one call.
Their image has torch, transformers, onnxruntime, numpy, pandas, pyarrow and pyyaml, which is all that
`ray_longtail.embed.TextEncoder` (the class the Encoder deployment and the embedding actors hold) imports. Serve's
own per-request cost is CPU work and is measured on the CPU machine by `bench/serve_load.py`.

`pack` writes, from the installed model and the pipeline's own text building (`item_texts` over the cleaned
catalog): the bundled catalog's texts (short titles), a synthetic magazines catalog's texts (multi-paragraph
descriptions, most cut at 128 tokens), the fp32 vectors of both computed here with the original fp32 weights
(torch), and the model with fp16 weights (44 MB). `measure` loads that model once per variant:

  cpu onnx        the CPU default (`embed.runtime: auto`), --cpu-threads intra-op threads (a replica's 1)
  cpu torch       eager torch fp32 on CPU, same threads
  cuda fp16       `TextEncoder(device="cuda")` as the Encoder deployment and the embedding actors build it
  cuda bf16/fp32  the same module cast

Every variant loads the packed fp16 weights (upcast on CPU and for cuda fp32), so its agreement with the reference
includes the weights' rounding; `cpu torch` and `cuda fp32` show that rounding alone.

It times, per variant: `query` (one title per call, the /search and /similar-by-text path), `query x32` (32
titles per call, what `@serve.batch` gathers under load), `items x5` / `items x64` (full item texts per call, POST
/items), and `bulk` (every text of a catalog at the embed stage's batch size 64, sorted by length, as one actor
does). Per-call latencies are medians and 99th percentiles over --calls (CPU: --cpu-calls) calls after --warmup
calls; on CUDA every call ends with the copy of the vectors to the host, so it includes the synchronisation.
Agreement: per catalog, one minus the cosine of each variant's vectors to the fp32 reference (mean and maximum)
and the mean overlap of each item's 10 nearest items with the reference's. CPU variants embed only the first
--cpu-bulk texts of each catalog in `bulk` (agreement over those).

On a lent GPU machine (one call, the pack carried; its python3 holds torch and transformers):

    PYTHONPATH=. python3 bench/gpu_encoder.py measure --variants "cpu onnx" "cuda fp16" "cuda bf16" "cuda fp32" \
        --out $OUT 2>&1 | tee $OUT/gpu_encoder.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

CATALOGS = ("retail", "magazines")
VARIANTS = ("cpu onnx", "cpu torch", "cuda fp16", "cuda bf16", "cuda fp32")


def catalog_texts(n_magazines: int, seed: int) -> dict[str, list[str]]:
    """{catalog: texts} built as the pipeline builds them: the cleaned catalog through `item_texts`."""
    from ray_longtail.config import DataConfig, EmbedConfig
    from ray_longtail.data.ingest import bundled_paths, clean_items
    from ray_longtail.data.read import read_table
    from ray_longtail.data.synthetic.shop import generate_shop
    from ray_longtail.embed import item_texts

    fields = EmbedConfig().text_fields
    retail, _ = clean_items(read_table(bundled_paths()[0]), "bundled", DataConfig())
    magazines, _ = clean_items(generate_shop(n_items=n_magazines, seed=seed, profile="magazines")[0], "magazines",
                               DataConfig())
    return {"retail": item_texts(retail, fields), "magazines": item_texts(magazines, fields)}


def pack(out: Path, model: str, n_magazines: int, seed: int) -> None:
    """Texts, the fp32 reference vectors (torch on CPU, original weights) and an fp16 copy of the model."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ray_longtail.embed import TextEncoder, resolve_model_path

    out.mkdir(parents=True, exist_ok=True)
    reference = TextEncoder(model, device="cpu", runtime="torch", num_threads=os.cpu_count())
    for name, texts in catalog_texts(n_magazines, seed).items():
        pd.DataFrame({"text": texts}).to_parquet(out / f"{name}_texts.parquet")
        np.save(out / f"{name}_reference.npy", reference.encode(texts))
        print(f"{name}: {len(texts)} texts, mean {np.mean([len(t) for t in texts]):.0f} characters", flush=True)
    path = resolve_model_path(model)
    AutoModel.from_pretrained(path, dtype=torch.float16).save_pretrained(out / "model")
    AutoTokenizer.from_pretrained(path).save_pretrained(out / "model")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"packed {out} ({size / 2**20:.1f} MiB)")


def make_variant(name: str, model: Path, cpu_threads: int):
    """A TextEncoder for one VARIANTS entry (cuda bf16/fp32: the fp16 module cast)."""
    import torch

    from ray_longtail.embed import TextEncoder

    device, kind = name.split()
    if device == "cpu":
        return TextEncoder(str(model), device="cpu", runtime=kind, num_threads=cpu_threads)
    encoder = TextEncoder(str(model), device="cuda", runtime="torch")
    encoder.pooled.to({"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[kind])
    return encoder


def time_calls(encode, batches: list[list[str]], warmup: int) -> list[float]:
    """Milliseconds per call of `encode(batch)` for each batch, after `warmup` untimed calls."""
    for batch in batches[:warmup]:
        encode(batch)
    times = []
    for batch in batches:
        start = time.perf_counter()
        encode(batch)
        times.append((time.perf_counter() - start) * 1000)
    return times


def neighbour_overlap(vectors: np.ndarray, reference: np.ndarray, k: int = 10) -> float:
    """Mean share of each item's k nearest items (itself excluded) that the reference's k nearest also hold."""
    def nearest(x: np.ndarray) -> np.ndarray:
        scores = x @ x.T
        np.fill_diagonal(scores, -np.inf)
        return np.argpartition(-scores, k, axis=1)[:, :k]

    mine, theirs = nearest(vectors), nearest(reference)
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(mine, theirs, strict=True)]))


def workloads(texts: dict[str, list[str]], calls: int, seed: int) -> dict[str, list[list[str]]]:
    """{workload: the batches of its calls}: queries are bundled-catalog texts (titles), items are magazines texts."""
    rng = np.random.default_rng(seed)

    def draw(catalog: str, size: int, n: int) -> list[list[str]]:
        pool = texts[catalog]
        return [[pool[i] for i in rng.integers(0, len(pool), size)] for _ in range(n)]

    quarter, sixteenth = max(calls // 4, 1), max(calls // 16, 1)
    return {"query": draw("retail", 1, calls), "query x32": draw("retail", 32, quarter),
            "items x5": draw("magazines", 5, quarter), "items x64": draw("magazines", 64, sixteenth)}


def measure_variant(name: str, args: argparse.Namespace, texts: dict[str, list[str]],
                    references: dict[str, np.ndarray]) -> list[dict]:
    """One variant's rows: each workload's latency, then each catalog's bulk throughput and agreement."""
    import torch

    on_gpu = name.startswith("cuda")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    encoder = make_variant(name, args.pack / "model", args.cpu_threads)
    rows = []
    for workload, batches in workloads(texts, args.calls if on_gpu else args.cpu_calls, args.seed).items():
        times = time_calls(encoder.encode, batches, args.warmup)
        rows.append({"variant": name, "workload": workload, "calls": len(times), "p50_ms": np.median(times),
                     "p99_ms": np.percentile(times, 99), "texts_per_s": 1000 * sum(map(len, batches)) / sum(times)})
    for catalog, pool in texts.items():
        pool = pool if on_gpu else pool[: args.cpu_bulk]
        times = time_calls(partial(encoder.encode, batch_size=64), [pool] * args.bulk_repeats, 1)
        vectors, reference = encoder.encode(pool, batch_size=64), references[catalog][: len(pool)]
        cosine = np.sum(vectors * reference, axis=1)
        rows.append({"variant": name, "workload": f"bulk {catalog}", "calls": len(times), "p50_ms": np.median(times),
                     "p99_ms": max(times), "texts_per_s": 1000 * len(pool) / np.median(times),
                     "one_minus_cos_mean": float(1 - cosine.mean()), "one_minus_cos_max": float(1 - cosine.min()),
                     "top10_overlap": neighbour_overlap(vectors, reference)})
    if on_gpu:
        rows[-1]["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return rows


def print_rows(rows: list[dict]) -> None:
    header = f"{'variant':<10} {'workload':<16} {'calls':>5} {'p50 ms':>8} {'p99 ms':>8} {'texts/s':>9}  agreement"
    print(header)
    for r in rows:
        agreement = (f"1-cos mean {r['one_minus_cos_mean']:.1e} max {r['one_minus_cos_max']:.1e}, top-10 overlap "
                     f"{r['top10_overlap']:.3f}" if "top10_overlap" in r else "")
        peak = f", GPU peak {r['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in r else ""
        print(f"{r['variant']:<10} {r['workload']:<16} {r['calls']:>5} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['texts_per_s']:>9.0f}  {agreement}{peak}", flush=True)


def machine() -> dict:
    import torch
    import transformers

    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def measure(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(args.seed)
    info = machine()
    print(json.dumps(info), flush=True)
    texts = {c: pd.read_parquet(args.pack / f"{c}_texts.parquet")["text"].tolist() for c in CATALOGS}
    references = {c: np.load(args.pack / f"{c}_reference.npy") for c in CATALOGS}
    variants = [v for v in args.variants if torch.cuda.is_available() or not v.startswith("cuda")]
    if len(variants) < len(args.variants):
        print("no CUDA device: cuda variants skipped", flush=True)
    rows, failures = [], {}
    for name in variants:
        try:
            rows += measure_variant(name, args, texts, references)
        except Exception as exc:  # noqa: BLE001 - one call on a lent machine: report the variant, keep the others
            failures[name] = f"{type(exc).__name__}: {exc}"
            print(f"{name} failed: {failures[name]}", flush=True)
            continue
        print_rows([r for r in rows if r["variant"] == name])
    print("\nall variants:")
    print_rows(rows)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"machine": info, "args": vars(args) | {"pack": str(args.pack), "out": str(args.out)},
                  "rows": rows, "failures": failures}
        (args.out / "gpu_encoder.json").write_text(json.dumps(record, indent=1, default=float))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    packing = sub.add_parser("pack", help="write texts, fp32 reference vectors and fp16 weights (needs the install)")
    packing.add_argument("--out", type=Path, default=Path(".gpu"))
    packing.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    packing.add_argument("--magazines", type=int, default=1000, help="synthetic magazines catalog size")
    packing.add_argument("--seed", type=int, default=0)
    measuring = sub.add_parser("measure", help="time every variant on the packed texts")
    measuring.add_argument("--pack", type=Path, default=Path(".gpu"))
    measuring.add_argument("--out", type=Path, help="folder for gpu_encoder.json")
    measuring.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    measuring.add_argument("--calls", type=int, default=400, help="calls of `query` (a quarter of it for x32, x5)")
    measuring.add_argument("--cpu-calls", type=int, default=100, help="--calls of the CPU variants")
    measuring.add_argument("--warmup", type=int, default=20)
    measuring.add_argument("--bulk-repeats", type=int, default=3)
    measuring.add_argument("--cpu-bulk", type=int, default=256, help="texts per catalog in the CPU variants' bulk")
    measuring.add_argument("--cpu-threads", type=int, default=1)
    measuring.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"
                       }.items():
        os.environ.setdefault(key, value)
    args = parse_args(argv)
    if args.command == "pack":
        pack(args.out, args.model, args.magazines, args.seed)
    else:
        measure(args)


if __name__ == "__main__":
    main()

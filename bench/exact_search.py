"""Exact top-n content search over a large catalog: what retrieval's dense sources do per user batch.

Scores a batch of user vectors against every item vector and keeps each user's top n (items the user has seen
excluded, as the pipeline does), three ways, on the same random unit vectors:

- `numpy argpartition`: matmul + `np.argpartition` (the first implementation);
- `torch.topk` (the pipeline's `ray_longtail.sources.base.top_n`: matmul + `torch.topk`, exact tie order);
- `faiss IndexFlatIP` (exact inner-product search, asked for n + the most items any user has seen), when
  `faiss` is importable (`pip install faiss-cpu`; not a dependency of the project).

    python bench/exact_search.py --items 1000000 --batch 33 --batches 20 --threads 1

It prints users/s of each way and its ratio to numpy. `--threads 1` matches one retrieval actor (Ray sets one
BLAS/torch thread per 1-CPU actor).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone

import numpy as np
import scipy.sparse as sp


def unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def numpy_top_n(scores: np.ndarray, n: int) -> np.ndarray:
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=33, help="users per batch (the pipeline: 2^25 // items)")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch
    from threadpoolctl import threadpool_limits

    from ray_longtail.sources.base import mask_seen, top_n

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    items = unit(args.items, args.dim, rng)
    users = [unit(args.batch, args.dim, rng) for _ in range(args.batches)]
    seen = [sp.random(args.batch, args.items, density=20 / args.items, format="csr", random_state=i,
                      dtype=np.float32) for i in range(args.batches)]

    def run_numpy(b: int) -> np.ndarray:
        return numpy_top_n(mask_seen(users[b] @ items.T, seen[b], True), args.n)

    def run_torch(b: int) -> np.ndarray:
        return top_n(mask_seen(users[b] @ items.T, seen[b], True), args.n)[0]

    ways = {"numpy argpartition": run_numpy, "torch.topk (pipeline)": run_torch}
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        index = faiss.IndexFlatIP(args.dim)
        index.add(items)

        def run_faiss(b: int) -> np.ndarray:
            most_seen = int(np.diff(seen[b].indptr).max())
            _, found = index.search(users[b], args.n + most_seen)
            rows = np.repeat(np.arange(args.batch), found.shape[1])
            keep = ~np.asarray(seen[b][rows, found.ravel()]).ravel().astype(bool)
            return [found[r][keep.reshape(found.shape)[r]][: args.n] for r in range(args.batch)]

        ways["faiss IndexFlatIP"] = run_faiss
    except ImportError:
        print("faiss not importable: `pip install faiss-cpu` to compare it")
    timings = {}
    with threadpool_limits(args.threads):
        reference = [run_torch(b) for b in range(2)]
        for name, way in ways.items():
            way(0)
            start = time.perf_counter()
            for b in range(args.batches):
                way(b)
            timings[name] = args.batch * args.batches / (time.perf_counter() - start)
            first = way(0)
            same = all(np.array_equal(np.asarray(first[r]), reference[0][r]) for r in range(args.batch))
            print(f"{name}: same lists as the pipeline on batch 0: {same}", flush=True)
    print(f"\n# exact search — {platform.node()}, {os.cpu_count()} cores, {args.threads} thread(s), "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"# {args.items:,} items x {args.dim} dims, {args.batches} batches of {args.batch} users, top {args.n}\n")
    print("| way | users/s | vs numpy |")
    print("|---|---|---|")
    base = timings["numpy argpartition"]
    for name, rate in timings.items():
        print(f"| {name} | {rate:,.1f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()

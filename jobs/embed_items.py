"""`ray job submit` entry point: ingest (if needed) and embed the catalog on the cluster.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/embed_items.py --artifacts /shared/artifacts --run-id shop1
"""

import sys

from ray_longtail.jobs import run_job

if __name__ == "__main__":
    raise SystemExit(run_job(["embed"], sys.argv[1:]))

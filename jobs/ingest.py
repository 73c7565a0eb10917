"""`ray job submit` entry point: the `ingest` stage (and any earlier stage whose outputs are missing).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/ingest.py --artifacts /shared/artifacts --run-id shop1
"""

import sys

from ray_longtail.jobs import run_job

if __name__ == "__main__":
    raise SystemExit(run_job(["ingest"], sys.argv[1:]))

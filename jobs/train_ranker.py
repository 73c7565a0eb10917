"""`ray job submit` entry point: build features (if needed) and train the XGBoost ranker with Ray Train.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train_ranker.py --artifacts /shared/artifacts --run-id shop1
"""

import sys

from ray_longtail.jobs import run_job

if __name__ == "__main__":
    raise SystemExit(run_job(["rank"], sys.argv[1:]))

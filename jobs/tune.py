"""`ray job submit` entry point: Ray Tune search on the valid window; prints the best config's path.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/tune.py --artifacts /shared/artifacts --run-id shop1 --num-samples 12
"""

import sys

from ray_longtail.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["tune", *sys.argv[1:]]))

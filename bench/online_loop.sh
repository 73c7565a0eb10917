#!/bin/bash
# The online loop on a finished run, end to end on one machine (bench/RESULTS.md records a run):
#   serve two A/B arms (the run's tail_weight vs 0) -> replay the test window as traffic -> ab-report
#   -> refresh the run with the logged purchases -> SIGHUP the server under load (redeploy to artifacts/latest).
#   bash bench/online_loop.sh [RUN]      # default: the bundled run of `make run`
set -eu
cd "$(dirname "$0")/.."
B=.venv/bin
RUN=${1:-artifacts/$($B/python -c "from ray_longtail.config import load_config; from ray_longtail.pipeline import make_run_id; print(make_run_id(load_config()))")}
OUT=$(mktemp -d)
export RAY_AUTH_MODE=disabled
rm -rf "$RUN/events" "$RUN/ab_report" "$RUN-refreshed"
touch "$RUN/metrics.json"  # so that artifacts/latest is this run until the refresh
$B/python - "$OUT/serve_config.yaml" <<'PY'
import sys, yaml
cfg = yaml.safe_load(open("serve_config.yaml"))
cfg["applications"][0]["args"]["variants"] = [{"name": "control", "share": 0.5},
                                              {"name": "tw0", "share": 0.5, "tail_weight": 0.0}]
yaml.safe_dump(cfg, open(sys.argv[1], "w"), sort_keys=False)
PY
$B/ray-longtail serve --run "$(dirname "$RUN")/latest" --port 8123 --serve-config "$OUT/serve_config.yaml" -q \
  > "$OUT/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
for i in $(seq 1 150); do curl -sf localhost:8123/healthz >/dev/null && break; sleep 2; done
/usr/bin/time -f "replay: %e s" $B/ray-longtail replay --run "$RUN" --url http://127.0.0.1:8123 -q
$B/ray-longtail ab-report --events "$RUN" --run "$RUN" --control control -q
/usr/bin/time -f "refresh: %e s" $B/ray-longtail refresh --run "$RUN" --events "$RUN" --out "$RUN-refreshed" -q
USER_ID=$($B/python -c "import pandas as pd; print(pd.read_parquet('$RUN/recommendations.parquet').user_id.iloc[0])")
$B/python bench/redeploy_load.py http://127.0.0.1:8123 "$(basename "$RUN")-refreshed" "$USER_ID" &
LOAD=$!
sleep 3
kill -HUP $SERVE  # `ray-longtail serve` re-resolves --run (artifacts/latest = the refreshed run) and redeploys
wait $LOAD

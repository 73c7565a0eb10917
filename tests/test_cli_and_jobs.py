"""The real CLI and `ray job submit` on small slices of the bundled data, against the session's Ray head."""

import json
import os
import re
import signal
import subprocess
import time

import pandas as pd
import pytest
from conftest import CLI, cli

from ray_longtail.artifacts import RunStore

RUN_ARTIFACTS = ["manifest.json", "ingest_report.json", "catalog.parquet", "interactions.parquet",
                 "split/train.parquet", "split/valid.parquet", "split/test.parquet", "item_embeddings.parquet",
                 "item_segments.parquet", "clusters.parquet", "user_profiles.parquet", "candidates.parquet",
                 "recommendations.parquet", "metrics.json", "report.md", "report.html",
                 "plots/tradeoff.png", "plots/popularity_curve.png"]


@pytest.fixture(scope="module")
def cli_run(pipeline_run):
    return pipeline_run


def test_run_writes_every_artifact_and_prints_the_run_dir_last(cli_run):
    _, first, run_dir = cli_run
    assert first.stdout.strip().splitlines()[-1] == str(run_dir)
    for name in RUN_ARTIFACTS:
        assert (run_dir / name).exists(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["data"]["items"].endswith("items.parquet")
    assert manifest["inputs"]["items"]["bytes"] > 0 and manifest["versions"]["ray"]
    assert set(manifest["stages"]) >= {"ingest", "split", "embed", "discover", "retrieve", "evaluate"}
    assert not list(run_dir.rglob("*.tmp-*"))


def test_report_html_is_one_self_contained_file_with_the_run_numbers(cli_run):
    _, _, run_dir = cli_run
    page = (run_dir / "report.html").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for title in ("Quality (test window)", "Trade-off over tail_weight", "Final stage", "Candidate recall",
                  "tail-heavy clusters", "Popularity and exposure", "by item segment"):
        assert title in page, title
    assert page.count('src="data:image/png;base64,') >= 5 and 'src="http' not in page and "<script" not in page
    assert f"{metrics['systems']['system']['ndcg@10']:.4f}" in page
    assert f"{metrics['systems']['EASE']['tail_recall@10']:.4f}" in page
    selection = metrics["selection"]  # what the tail may spend: the chosen scorer's lead over the best source
    assert f"({selection['best_single_source_name']} at tail_weight 0) {selection['lead']:+.4f}" in page


def test_long_stages_log_progress_lines_not_bars(cli_run):
    """Embedding, ranker rounds and the serving lists log done/total, rate and ETA; the CLI's log holds no Ray Data
    progress bar (stderr is not a terminal there)."""
    _, first, _ = cli_run
    log = first.stderr
    assert re.search(r"embed: \d+/\d+ items \(\d+ %\), [\d.]+ items/s", log), log[-3000:]
    assert re.search(r"ranker [123]/3: \d+/\d+ rounds .*valid ndcg@10", log), log[-3000:]  # member / members
    assert re.search(r"serving: \d+/\d+ users \(100 %\)", log)
    assert "Running Dataset" not in log and "\r" not in log


def test_rerun_skips_finished_stages(cli_run, ray_head):
    args, _, run_dir = cli_run
    before = (run_dir / "item_embeddings.parquet").stat().st_mtime_ns
    second = cli(args, ray_head)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "stage embed     skipped" in second.stderr and "stage ingest    skipped" in second.stderr
    assert (run_dir / "item_embeddings.parquet").stat().st_mtime_ns == before


KILLED_IN = ("embed", "retrieve", "features", "rank", "serving", "evaluate")


def test_a_run_killed_in_any_stage_resumes_to_the_same_results(cli_run, ray_head, bundled_slice, tmp_path):
    """`ray-longtail run` SIGKILLed a second into each stage in turn (the stage's work half done, its artifacts
    maybe half written), rerun each time: it ends with the metrics and lists of the run that was never killed."""
    args, _, reference = cli_run
    args = [*args[:args.index("--artifacts") + 1], str(tmp_path), *args[args.index("--artifacts") + 2:]]
    env = dict(os.environ, RAY_ADDRESS=ray_head.address)
    for stage in KILLED_IN:
        proc = subprocess.Popen([CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        for line in proc.stderr:
            if f"stage {stage:<9} running" in line:
                time.sleep(1.0)
                proc.send_signal(signal.SIGKILL)
                break
        proc.communicate(timeout=600)
        assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed in {stage}"
    final = cli(args, ray_head)
    assert final.returncode == 0, final.stderr[-3000:]
    run_dir = tmp_path / reference.name
    assert json.loads((run_dir / "metrics.json").read_text())["systems"] == \
        json.loads((reference / "metrics.json").read_text())["systems"]
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "recommendations.parquet"),
                                  pd.read_parquet(reference / "recommendations.parquet"))


def test_user_errors_exit_nonzero_without_traceback(ray_head, tmp_path):
    bad = cli(["ingest", "--items", str(tmp_path / "missing.parquet"), "--interactions", "x.csv",
               "--artifacts", str(tmp_path)], ray_head)
    assert bad.returncode == 2 and "missing.parquet" in bad.stderr and "Traceback" not in bad.stderr
    bad_key = cli(["ingest", "--set", "embed.nope=1", "--artifacts", str(tmp_path)], ray_head)
    assert bad_key.returncode == 2 and "embed.nope" in bad_key.stderr


def test_embed_job_via_ray_job_submit(ray_head, bundled_slice, tmp_path):
    items, events = bundled_slice
    logs = ray_head.submit(["python", "jobs/embed_items.py", "--items", items, "--interactions", events,
                            "--artifacts", str(tmp_path), "--run-id", "job", "--set", "embed.block_size=256"])
    assert logs.strip().splitlines()[-1] == str(tmp_path / "job")
    store = RunStore(str(tmp_path), "job")
    embeddings = store.read_arrow("item_embeddings.parquet")
    assert embeddings.num_rows == len(store.read_table("catalog.parquet")) > 100


METRICS = ["recall", "ndcg", "hit", "tail_recall", "cold_recall", "coverage", "aplt", "gini", "novelty"]
SYSTEMS = ["MostPopular", "ItemKNN", "EASE", "ALS", "ContentKNN", "TailExplore", "system"]


def recompute_from_artifacts(run_dir, k):
    """Every metric of the final list from recommendations.parquet and the split files, written directly
    from DESIGN.md's definitions with pandas (independent of ray_longtail.metrics)."""
    import math

    import numpy as np
    import pandas as pd

    recs = pd.read_parquet(run_dir / "recommendations.parquet")
    catalog = pd.read_parquet(run_dir / "catalog.parquet")["item_id"]
    history = pd.concat([pd.read_parquet(run_dir / f"split/{p}.parquet") for p in ("train", "valid")])
    test = pd.read_parquet(run_dir / "split/test.parquet")
    pop = history.groupby("item_id")["user_id"].nunique().reindex(catalog, fill_value=0)
    order = sorted(catalog, key=lambda i: (-pop[i], i))
    head = set(order[: math.ceil(0.2 * len(catalog))])
    cold = set(pop[pop == 0].index)
    seen = history.groupby("user_id")["item_id"].agg(set)
    truth = {u: set(g) - seen.get(u, set()) for u, g in test.groupby("user_id")["item_id"]}
    truth = {u: g for u, g in truth.items() if g and u in seen.index}
    lists = {u: g.sort_values("rank")["item_id"].tolist()[:k] for u, g in recs.groupby("user_id")}
    assert set(lists) == set(truth)
    rows = []
    for u, g in truth.items():
        r = lists[u]
        hits = [i in g for i in r]
        ideal = sum(1 / math.log2(j + 2) for j in range(min(len(g), k)))
        gt, gc = g - head, g & cold
        rows.append({"recall": sum(hits) / len(g), "hit": float(any(hits)),
                     "ndcg": sum(1 / math.log2(j + 2) for j, h in enumerate(hits) if h) / ideal,
                     "tail_recall": len(set(r) & gt) / len(gt) if gt else np.nan,
                     "cold_recall": len(set(r) & gc) / len(gc) if gc else np.nan,
                     "aplt": len(set(r) - head) / k})
    frame = pd.DataFrame(rows)
    out = {m: float(frame[m].mean()) for m in ["recall", "hit", "ndcg", "tail_recall", "aplt"]}
    out["cold_recall"] = float(frame["cold_recall"].mean()) if frame["cold_recall"].notna().any() else 0.0
    exposure = pd.Series([i for r in lists.values() for i in r]).value_counts().reindex(catalog, fill_value=0)
    x = np.sort(exposure.to_numpy())
    n = len(x)
    out["gini"] = float(((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum()))
    out["coverage"] = float((exposure > 0).sum() / len(catalog))
    n_hist = history["user_id"].nunique()
    out["novelty"] = float(np.mean([-math.log2((pop[i] + 1) / (n_hist + 1)) for r in lists.values() for i in r]))
    return out


def test_metrics_json_has_every_metric_and_matches_recomputation(cli_run):
    _, first, run_dir = cli_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"cut_valid", "cut_test", "catalog", "head", "eval_users"} <= set(metrics["info"])
    for system in SYSTEMS:
        for k in (10, 20):
            for metric in METRICS:
                assert f"{metric}@{k}" in metrics["systems"][system], (system, metric, k)
    for k in (10, 20):
        expected = recompute_from_artifacts(run_dir, k)
        for metric, value in expected.items():
            assert metrics["systems"]["system"][f"{metric}@{k}"] == pytest.approx(value, rel=1e-6, abs=1e-9), metric
    assert "ndcg@10" in first.stdout and "EASE" in first.stdout


def test_content_sources_find_more_tail_than_collaborative_ones(cli_run):
    _, _, run_dir = cli_run
    systems = json.loads((run_dir / "metrics.json").read_text())["systems"]
    for content in ("TailExplore", "ContentKNN"):
        for collaborative in ("ItemKNN", "MostPopular"):
            assert systems[content]["tail_recall@10"] > systems[collaborative]["tail_recall@10"]
    recall = json.loads((run_dir / "metrics.json").read_text())["candidate_recall"]
    assert recall["union"]["recall"] >= max(v["recall"] for s, v in recall.items() if s != "union")
    assert (run_dir / "report.md").exists() and (run_dir / "plots" / "exposure_by_decile.png").exists()


def test_whole_pipeline_via_ray_job_submit(ray_head, bundled_slice, tmp_path):
    items, events = bundled_slice
    logs = ray_head.submit(["python", "jobs/run_pipeline.py", "--items", items, "--interactions", events,
                            "--artifacts", str(tmp_path), "--run-id", "jobrun", "--set", "rank.num_boost_round=30"])
    summary = json.loads(logs.strip().splitlines()[-2])
    assert {"ingest", "embed", "retrieve", "rank", "evaluate"} <= set(summary["stages"])
    metrics = json.loads((tmp_path / "jobrun" / "metrics.json").read_text())
    assert metrics["systems"]["system"]["ndcg@10"] > 0


def test_recommend_command_matches_batch_lists(cli_run, ray_head):
    import pandas as pd

    _, _, run_dir = cli_run
    recs = pd.read_parquet(run_dir / "recommendations.parquet")
    user = str(recs["user_id"].iloc[0])
    out = cli(["recommend", "--run", str(run_dir), "--user", user, "--user", "no-such-user", "-k", "5", "-q"],
              ray_head)
    assert out.returncode == 0, out.stderr[-3000:]
    known, unknown = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    expected = recs[recs["user_id"] == user].sort_values("rank")["item_id"].head(5).tolist()
    assert [i["item_id"] for i in known["items"]] == expected
    assert unknown["cold_start"] is True and unknown["user_id"] == "no-such-user" and len(unknown["items"]) == 5

"""The A/B report on constructed feedback events (seeded, no Ray): counts, intervals, tests, tail share, revenue."""

import json

import numpy as np
import pandas as pd
import pytest

from ray_longtail.abtest import report_markdown, variant_report, wilson_interval, write_plot
from ray_longtail.data import schema as S
from ray_longtail.errors import UserError


def make_events(n_users: int, p: dict[str, float], seed: int = 0, impressions: int = 10) -> pd.DataFrame:
    """Users alternate between variants; each sees `impressions` items item0..item9 and clicks each with p[variant]."""
    rng = np.random.default_rng(seed)
    names = sorted(p)
    users = np.repeat([f"u{i}" for i in range(n_users)], impressions)
    variants = np.repeat([names[i % len(names)] for i in range(n_users)], impressions)
    items = np.tile([f"item{j}" for j in range(impressions)], n_users)
    imp = pd.DataFrame({S.USER_ID: users, S.ITEM_ID: items, "variant": variants, S.EVENT: "impression"})
    clicked = rng.random(len(imp)) < np.array([p[v] for v in variants])
    events = pd.concat([imp, imp[clicked].assign(**{S.EVENT: "click"})], ignore_index=True)
    events[S.TIMESTAMP] = np.int64(1_700_000_000)
    events["request_id"], events["position"], events["received"] = None, 0, np.int64(1_700_000_001)
    return events


@pytest.fixture(scope="module")
def ab_events() -> pd.DataFrame:
    return make_events(3000, {"a": 0.05, "b": 0.08}, seed=1)


def test_counts_and_ctr_match_the_constructed_events(ab_events):
    report = variant_report(ab_events)
    assert list(report["variants"]) == ["a", "b"] and report["control"] == "a"
    for name, v in report["variants"].items():
        mine = ab_events[ab_events["variant"] == name]
        clicks = int((mine[S.EVENT] == "click").sum())
        assert v["users"] == 1500 and v["impressions"] == 15000 and v["clicks"] == clicks
        assert v["add_to_carts"] == 0 and v["purchases"] == 0
        assert v["ctr"]["value"] == clicks / 15000
        lo, hi = v["ctr"]["ci"]
        assert lo < v["ctr"]["value"] < hi
        assert v["tail_share_impressions"] is None  # no segments given


def test_ctr_interval_shrinks_with_more_users():
    small = variant_report(make_events(300, {"a": 0.05}, seed=2))["variants"]["a"]["ctr"]["ci"]
    large = variant_report(make_events(3000, {"a": 0.05}, seed=2))["variants"]["a"]["ctr"]["ci"]
    assert large[1] - large[0] < small[1] - small[0]


def test_b_beats_a_and_equal_variants_do_not_differ(ab_events):
    ctr = variant_report(ab_events)["comparisons"]["b"]["ctr"]
    assert ctr["p_value"] < 0.01 and ctr["significant"] is True
    assert ctr["diff"] > 0 and ctr["ci"][0] > 0 and ctr["lift"] == pytest.approx(ctr["diff"] / ctr["control"])
    same = variant_report(make_events(3000, {"a": 0.05, "b": 0.05}, seed=3))["comparisons"]["b"]["ctr"]
    assert same["p_value"] > 0.05 and same["ci"][0] < 0 < same["ci"][1]


def test_wilson_interval_at_zero_successes(ab_events):
    lo, hi = wilson_interval(0, 100)
    assert lo == 0 and 0 < hi < 0.1
    conversion = variant_report(ab_events)["variants"]["a"]["conversion"]
    assert conversion["value"] == 0 and conversion["ci"][0] == 0 and conversion["ci"][1] > 0
    assert wilson_interval(0, 0) is None


def test_tail_share_uses_segments_and_unknown_items_are_tail(ab_events):
    # item0..item2 head, item3 tail, item4 cold, item5..item9 not listed (added at serving time): 7 of 10 non-head
    segments = pd.DataFrame({S.ITEM_ID: ["item0", "item1", "item2", "item3", "item4"],
                             S.SEGMENT: [S.HEAD, S.HEAD, S.HEAD, S.TAIL, S.COLD]})
    report = variant_report(ab_events, segments=segments)
    for name, v in report["variants"].items():
        assert v["tail_share_impressions"] == pytest.approx(0.7)
        clicks = ab_events[(ab_events["variant"] == name) & (ab_events[S.EVENT] == "click")]
        assert v["tail_share_clicks"] == pytest.approx((~clicks[S.ITEM_ID].isin(["item0", "item1", "item2"])).mean())


def test_revenue_matches_hand_sums():
    rows = [("u1", "x", "impression", "a"), ("u1", "x", "purchase", "a"), ("u2", "y", "impression", "a"),
            ("u3", "x", "impression", "b"), ("u3", "x", "purchase", "b"), ("u3", "y", "purchase", "b"),
            ("u4", "y", "impression", "b"), ("u4", "y", "purchase", "b"), ("u5", "z", "purchase", "b")]
    events = pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID, S.EVENT, "variant"])
    prices = pd.Series({"x": 10.0, "y": 2.5})  # z has no price
    report = variant_report(events, prices=prices)
    a, b = report["variants"]["a"], report["variants"]["b"]
    assert a["revenue"] == 10.0 and a["revenue_per_user"]["value"] == 5.0 and a["users"] == 2
    assert b["revenue"] == 15.0 and b["unpriced_purchases"] == 1 and b["purchases"] == 4
    assert b["revenue_per_user"]["value"] == 7.5  # u5 was never exposed: (12.5 + 2.5) / 2
    assert b["conversion"]["value"] == 1.0 and a["conversion"]["value"] == 0.5
    rpu = report["comparisons"]["b"]["revenue_per_user"]
    assert rpu["diff"] == 2.5 and rpu["ci"][0] < 2.5 < rpu["ci"][1] and 0 < rpu["p_value"] <= 1


def test_unknown_control_raises_and_named_control_is_used(ab_events):
    with pytest.raises(UserError, match=r"'c'.*\['a', 'b'\]"):
        variant_report(ab_events, control="c")
    report = variant_report(ab_events, control="b")
    assert report["control"] == "b" and list(report["comparisons"]) == ["a"]
    assert report["comparisons"]["a"]["ctr"]["diff"] < 0


def test_events_without_variant_are_unattributed(ab_events):
    stray = ab_events.head(7).assign(variant=None, **{S.USER_ID: "stray"})
    report = variant_report(pd.concat([ab_events, stray], ignore_index=True))
    assert report["unattributed_events"] == 7 and report["events"] == len(ab_events) + 7
    assert sum(v["impressions"] for v in report["variants"].values()) == int((ab_events[S.EVENT] == "impression").sum())


def test_report_is_json_and_renders(ab_events, tmp_path):
    events = pd.concat([ab_events, pd.DataFrame([{S.USER_ID: "u0", S.ITEM_ID: "item0", S.EVENT: "purchase",
                                                  "variant": "c"}])], ignore_index=True)  # c: no impressions
    segments = pd.DataFrame({S.ITEM_ID: ["item0"], S.SEGMENT: [S.HEAD]})
    report = variant_report(events, segments=segments, prices=pd.Series({"item0": 3.0}))
    assert report["variants"]["c"]["ctr"]["value"] is None and report["comparisons"]["c"]["ctr"]["p_value"] is None
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    text = report_markdown(report)
    assert all(f"Variant {name}" in text for name in ("a", "b", "c")) and "significant at 95%" in text
    path = tmp_path / "ab.png"
    write_plot(report, str(path))
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 1000

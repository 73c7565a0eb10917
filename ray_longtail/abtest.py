"""A/B report from logged serving feedback (`serve.events`): per variant the counts, CTR, conversion, tail share and
revenue, and each variant against a control with confidence intervals and two-sided p-values.

Users are the randomisation unit (a user keeps one variant), so intervals and tests are built from per-user sums:
the impressions of one user share that user's taste and sessions and are not independent trials, and counting them
as such would make the intervals too narrow. The report is a plain dict (ints, floats, None for undefined) so it can
be written as JSON as it is."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ray_longtail.data import schema as S
from ray_longtail.errors import DataError, UserError
from ray_longtail.serve.events import EVENT_SCHEMA, EVENT_TYPES

VARIANT, REQUEST_ID, POSITION = "variant", "request_id", "position"
IMPRESSION, CLICK, ADD_TO_CART, PURCHASE = EVENT_TYPES
REQUIRED = (S.USER_ID, S.ITEM_ID, S.EVENT, VARIANT)
COUNTS = {"imp": IMPRESSION, "clk": CLICK, "cart": ADD_TO_CART, "pur": PURCHASE}


def _num(x) -> float | None:
    """A plain float, or None where undefined (None, NaN, inf), so the report stays JSON-serialisable."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _metric(value, se, z: float) -> dict:
    """{"value", "ci": [lo, hi] (normal interval) or None, "se"}."""
    value, se = _num(value), _num(se)
    ci = None if value is None or se is None else [value - z * se, value + z * se]
    return {"value": value, "ci": ci, "se": se}


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> list[float] | None:
    """Wilson score interval [lo, hi] for a proportion; unlike the normal interval it stays inside [0, 1] and is not
    degenerate at 0 or n successes (0 of n gives [0, hi > 0]). None when n == 0."""
    if n == 0:
        return None
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p, denom = successes / n, 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [0.0 if successes == 0 else max(0.0, centre - half), 1.0 if successes == n else min(1.0, centre + half)]


def _ratio(num: pd.Series, den: pd.Series) -> tuple[float | None, float | None]:
    """sum(num) / sum(den) over users and its delta-method standard error,
    Var ~ sum_i (num_i - R den_i)^2 / (N (N - 1) mean(den)^2), treating each user's (num, den) as one draw."""
    total = float(den.sum())
    if total == 0:
        return None, None
    r, n = float(num.sum()) / total, len(den)
    if n < 2:
        return r, None
    resid = num.to_numpy(float) - r * den.to_numpy(float)
    return r, math.sqrt(float((resid**2).sum()) / (n * (n - 1))) / float(den.mean())


def _per_user(events: pd.DataFrame, segments: pd.DataFrame | None, prices: pd.Series | None) -> pd.DataFrame:
    """(variant, user_id)-indexed sums: imp, clk, cart, pur counts, tail_imp / tail_clk (non-head items; an item
    missing from `segments` is tail), rev (purchased items' prices, unpriced = 0) and unpriced purchases."""
    ev = events[S.EVENT]
    frame = pd.DataFrame({key: (ev == name).astype(np.int64) for key, name in COUNTS.items()}, index=events.index)
    head = set() if segments is None else set(segments.loc[segments[S.SEGMENT] == S.HEAD, S.ITEM_ID])
    tail = (~events[S.ITEM_ID].isin(head)).astype(np.int64)
    frame["tail_imp"], frame["tail_clk"] = frame["imp"] * tail, frame["clk"] * tail
    price = events[S.ITEM_ID].map(prices) if prices is not None else pd.Series(np.nan, index=events.index)
    frame["rev"] = (frame["pur"] * price.fillna(0.0)).astype(float)
    frame["unpriced"] = frame["pur"] * price.isna().astype(np.int64)
    return frame.groupby([events[VARIANT], events[S.USER_ID]]).sum()


def _variant_stats(u: pd.DataFrame, z: float, confidence: float, tails: bool, priced: bool) -> dict:
    """The metrics of one variant from its per-user sums `u` (one row per user with any event)."""
    exposed = u[u["imp"] > 0]
    n, imps, clicks = len(exposed), int(u["imp"].sum()), int(u["clk"].sum())
    buyers, clickers = int((exposed["pur"] > 0).sum()), int((exposed["clk"] > 0).sum())
    out = {"users": n, "impressions": imps, "clicks": clicks, "add_to_carts": int(u["cart"].sum()),
           "purchases": int(u["pur"].sum()), "ctr": _metric(*_ratio(u["clk"], u["imp"]), z),
           "conversion": {"value": buyers / n if n else None, "ci": wilson_interval(buyers, n, confidence),
                          "buyers": buyers},
           "click_users": {"value": clickers / n if n else None, "ci": wilson_interval(clickers, n, confidence),
                           "clickers": clickers},  # share of exposed users with a click (HitRate's online twin)
           "tail_share_impressions": int(u["tail_imp"].sum()) / imps if tails and imps else None,
           "tail_share_clicks": int(u["tail_clk"].sum()) / clicks if tails and clicks else None}
    if priced:
        rev = exposed["rev"]
        se = rev.std(ddof=1) / math.sqrt(n) if n > 1 else None
        out.update(revenue=float(u["rev"].sum()), unpriced_purchases=int(u["unpriced"].sum()),
                   revenue_per_user=_metric(rev.mean() if n else None, se, z))
    return out


def _difference(control, variant, se, p_value, z: float, alpha: float) -> dict:
    """{"control", "variant", "diff" (variant - control), "ci" on diff, "lift" (diff / control), "p_value",
    "significant" (p < 1 - confidence)}; None throughout where a side is undefined."""
    control, variant, se, p_value = _num(control), _num(variant), _num(se), _num(p_value)
    diff = None if control is None or variant is None else variant - control
    return {"control": control, "variant": variant, "diff": diff,
            "ci": None if diff is None or se is None else [diff - z * se, diff + z * se],
            "lift": diff / control if diff is not None and control else None,
            "p_value": p_value, "significant": None if p_value is None else p_value < alpha}


def _compare(a: pd.DataFrame, b: pd.DataFrame, z: float, confidence: float, priced: bool) -> dict:
    """Variant `b` against control `a` (per-user sums): CTR by a z-test on the delta-method variances, conversion
    by a two-proportion z-test with pooled variance (CI unpooled), revenue per exposed user by Welch's t-test."""
    alpha = 1 - confidence
    (ra, sa), (rb, sb) = _ratio(a["clk"], a["imp"]), _ratio(b["clk"], b["imp"])
    se = math.sqrt(sa**2 + sb**2) if sa is not None and sb is not None else None
    p = 2 * stats.norm.sf(abs(rb - ra) / se) if se else None
    out = {"ctr": _difference(ra, rb, se, p, z, alpha)}
    ea, eb = a[a["imp"] > 0], b[b["imp"] > 0]
    na, nb, ka, kb = len(ea), len(eb), int((ea["pur"] > 0).sum()), int((eb["pur"] > 0).sum())
    pa, pb = (ka / na if na else None), (kb / nb if nb else None)
    se = p = None
    if na and nb:
        pool = (ka + kb) / (na + nb)
        se_pool = math.sqrt(pool * (1 - pool) * (1 / na + 1 / nb))
        p = 2 * stats.norm.sf(abs(pb - pa) / se_pool) if se_pool else None
        se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    out["conversion"] = _difference(pa, pb, se, p, z, alpha)
    if priced:
        out["revenue_per_user"] = _welch(ea["rev"].to_numpy(float), eb["rev"].to_numpy(float), confidence)
    return out


def _welch(x: np.ndarray, y: np.ndarray, confidence: float) -> dict:
    """Welch's unequal-variance t-test and CI for mean(y) - mean(x)."""
    mx, my = (float(x.mean()) if len(x) else None), (float(y.mean()) if len(y) else None)
    if len(x) < 2 or len(y) < 2:
        return _difference(mx, my, None, None, 0.0, 1 - confidence)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return _difference(mx, my, None, None, 0.0, 1 - confidence)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    p = 2 * stats.t.sf(abs(my - mx) / se, df)
    return _difference(mx, my, se, p, float(stats.t.ppf(0.5 + confidence / 2, df)), 1 - confidence)


def variant_report(events: pd.DataFrame, segments: pd.DataFrame | None = None, prices: pd.Series | None = None,
                   control: str | None = None, confidence: float = 0.95) -> dict:
    """A/B report of logged feedback `events` (columns of `serve.events.EVENT_SCHEMA`; at least user_id, item_id,
    event, variant), so a ranking change can be judged on CTR, conversion, long-tail exposure and revenue.

    `segments` (item_id, segment) marks head items; every other item, including ones unknown to it (added at serving
    time, so cold), counts as tail; without it tail shares are None. `prices`: Series indexed by item_id.
    Events without a variant are not attributed and only counted. Users are the randomisation unit: CTR's interval
    uses the delta method on per-user click and impression sums, since one user's impressions are not independent.

    Returns {"confidence", "control", "events", "unattributed_events", "variants": {name: metrics} sorted by name,
    "comparisons": {name: {"ctr"|"conversion"|"revenue_per_user": difference}} for each non-control variant}."""
    missing = [c for c in REQUIRED if c not in events.columns]
    if missing:
        raise DataError(f"events lack columns {missing}; logged events have {EVENT_SCHEMA.names}")
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be in (0, 1), got {confidence}")
    attributed = events[VARIANT].notna() & (events[VARIANT].astype(str) != "")
    kept = events[attributed].assign(**{VARIANT: events.loc[attributed, VARIANT].astype(str)})
    names = sorted(kept[VARIANT].unique())
    if control is None:
        control = names[0] if names else None
    elif control not in names:
        raise UserError(f"control variant {control!r} is not in the events; variants are {names}")
    z, priced = float(stats.norm.ppf(0.5 + confidence / 2)), prices is not None
    per_user = _per_user(kept, segments, prices)
    users = {name: per_user.xs(name, level=0) for name in names}
    return {"confidence": float(confidence), "control": control, "events": len(events),
            "unattributed_events": int((~attributed).sum()),
            "variants": {n: _variant_stats(users[n], z, confidence, segments is not None, priced) for n in names},
            "comparisons": {n: _compare(users[control], users[n], z, confidence, priced)
                            for n in names if n != control}}


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    return str(x) if isinstance(x, int) else f"{x:.4g}"


def _ci(ci) -> str:
    return "—" if ci is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def report_markdown(report: dict) -> str:
    """The report as markdown: one metric | value | CI table per variant, then one table of comparisons."""
    conf = f"{report['confidence']:.0%}"
    lines = [f"# A/B report (control: {report['control']})", "",
             f"{report['events']} events, {report['unattributed_events']} without a variant (not attributed).", ""]
    for name, v in report["variants"].items():
        lines += [f"## Variant {name}" + (" (control)" if name == report["control"] else ""), "",
                  f"| metric | value | {conf} CI |", "|---|---|---|"]
        for key, value in v.items():
            if isinstance(value, dict):
                lines.append(f"| {key} | {_fmt(value['value'])} | {_ci(value['ci'])} |")
            else:
                lines.append(f"| {key} | {_fmt(value)} | — |")
        lines.append("")
    lines += ["## Comparisons", "", f"| variant | metric | control | variant value | diff | {conf} CI on diff | lift "
              f"| p-value | significant at {conf} |", "|---|---|---|---|---|---|---|---|---|"]
    for name, comp in report["comparisons"].items():
        for metric, d in comp.items():
            lines.append(f"| {name} | {metric} | {_fmt(d['control'])} | {_fmt(d['variant'])} | {_fmt(d['diff'])} "
                         f"| {_ci(d['ci'])} | {_fmt(d['lift'])} | {_fmt(d['p_value'])} | {_fmt(d['significant'])} |")
    return "\n".join(lines) + "\n"


def write_plot(report: dict, path: str) -> None:
    """One PNG at `path`: bars per variant for CTR, conversion and tail share of impressions, CI error bars where
    the report has intervals (undefined values are left out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4))
    FigureCanvasAgg(fig)
    names = list(report["variants"])
    for i, (key, title) in enumerate([("ctr", "CTR"), ("conversion", "conversion"),
                                      ("tail_share_impressions", "tail share of impressions")]):
        ax = fig.add_subplot(1, 3, i + 1)
        cells = [report["variants"][n][key] for n in names]
        cells = [c if isinstance(c, dict) else {"value": c, "ci": None} for c in cells]
        values = [np.nan if c["value"] is None else c["value"] for c in cells]
        err = [[0.0 if c["ci"] is None or c["value"] is None else c["value"] - c["ci"][0] for c in cells],
               [0.0 if c["ci"] is None or c["value"] is None else c["ci"][1] - c["value"] for c in cells]]
        ax.bar(names, values, yerr=err if any(c["ci"] for c in cells) else None, capsize=4, color="tab:blue")
        ax.set_title(title)
    fig.suptitle(f"A/B report (control: {report['control']}, {report['confidence']:.0%} CI)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


def write_ab_report(events_uri: str, run: str | None = None, control: str | None = None,
                    out: str | None = None) -> tuple[dict, str]:
    """`ray-longtail ab-report`: the report of the events store at `events_uri` (segments and prices from `run`'s
    catalog when given), written as ab_report.json / .md / .png into `out` (default: `<run>/ab_report`, else
    ./ab_report). Returns (report, markdown)."""
    from ray_longtail.artifacts import open_run_store
    from ray_longtail.serve.events import open_events

    events = open_events(events_uri).read()
    segments = prices = None
    if run:
        store = open_run_store(run)
        segments = store.read_table("item_segments.parquet", columns=[S.ITEM_ID, S.SEGMENT])
        catalog = store.read_table("catalog.parquet")
        if S.PRICE in catalog.columns and catalog[S.PRICE].notna().any():
            prices = catalog.set_index(S.ITEM_ID)[S.PRICE].dropna()
        out = out or (store.path("ab_report") if "://" not in store.uri else None)
    report = variant_report(events, segments, prices, control)
    folder = Path(out or "ab_report")
    folder.mkdir(parents=True, exist_ok=True)
    markdown = report_markdown(report)
    (folder / "ab_report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (folder / "ab_report.md").write_text(markdown)
    write_plot(report, str(folder / "ab_report.png"))
    return report, markdown

"""Discover the long tail: popularity segments (head / tail / cold) and KMeans clusters of item embeddings,
each cluster described by size, segment counts, tail share, mean popularity and a readable TF-IDF label.

Head = the first ceil(head_share·|catalog|) items by (−popularity, item_id); tail = every other catalog item;
cold = items with popularity 0 (a subset of the tail). Popularity = distinct users in the history.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ray_longtail.data import schema as S


def segment_items(item_ids: np.ndarray, popularity: np.ndarray, head_share: float = 0.2) -> pd.DataFrame:
    """(item_id, popularity, segment) in the given item order; ties in popularity broken by item_id."""
    frame = pd.DataFrame({S.ITEM_ID: np.asarray(item_ids, dtype=object).astype(str),
                          S.POPULARITY: np.asarray(popularity, dtype=np.int64)})
    order = np.lexsort((frame[S.ITEM_ID].to_numpy(), -frame[S.POPULARITY].to_numpy()))
    n_head = math.ceil(head_share * len(frame))
    is_head = np.zeros(len(frame), dtype=bool)
    is_head[order[:n_head]] = True
    segment = np.where(is_head, S.HEAD, np.where(frame[S.POPULARITY].to_numpy() == 0, S.COLD, S.TAIL))
    frame[S.SEGMENT] = segment
    return frame


def cluster_items(vectors: np.ndarray, n_clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """KMeans over unit vectors: (labels (n,), centroids (k, dim)). MiniBatchKMeans above 50k items."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    k = max(1, min(n_clusters, len(vectors)))
    if len(vectors) > 50_000:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=8192, n_init=3)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=3)
    labels = model.fit_predict(vectors)
    return labels.astype(np.int64), model.cluster_centers_.astype(np.float32)


def cluster_labels(texts: list[str], labels: np.ndarray, n_terms: int = 4) -> dict[int, str]:
    """Readable label per cluster: its `n_terms` TF-IDF terms with the highest mean weight in the cluster
    relative to the whole catalog."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not any(t.strip() for t in texts):
        return {int(c): "" for c in np.unique(labels)}
    vectorizer = TfidfVectorizer(stop_words="english", min_df=2, max_features=50_000, lowercase=True,
                                 token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b", sublinear_tf=True)
    try:
        tfidf = vectorizer.fit_transform(texts)
    except ValueError:
        return {int(c): "" for c in np.unique(labels)}
    terms = np.asarray(vectorizer.get_feature_names_out())
    overall = np.asarray(tfidf.mean(axis=0)).ravel()
    out = {}
    for cluster in np.unique(labels):
        rows = tfidf[labels == cluster]
        lift = np.asarray(rows.mean(axis=0)).ravel() - overall
        top = np.argsort(-lift)[:n_terms]
        out[int(cluster)] = " / ".join(terms[i] for i in top if lift[i] > 0) or "(no text)"
    return out


def cluster_table(segments: pd.DataFrame, labels: np.ndarray, names: dict[int, str]) -> pd.DataFrame:
    """Per cluster: size, head/tail/cold counts, tail share, mean popularity, label; tail-heavy first."""
    frame = segments.assign(**{S.CLUSTER: labels})
    table = frame.groupby(S.CLUSTER).agg(
        size=(S.ITEM_ID, "size"),
        head=(S.SEGMENT, lambda s: int((s == S.HEAD).sum())),
        tail=(S.SEGMENT, lambda s: int((s != S.HEAD).sum())),
        cold=(S.SEGMENT, lambda s: int((s == S.COLD).sum())),
        mean_popularity=(S.POPULARITY, "mean"),
    ).reset_index()
    table["tail_share"] = table["tail"] / table["size"]
    table["label"] = table[S.CLUSTER].map(names).fillna("")
    return table.sort_values(["tail_share", "size"], ascending=[False, False]).reset_index(drop=True)


def discovery_summary(clusters: pd.DataFrame, top: int = 10, min_size: int = 5) -> str:
    """The merchandiser's view: the largest tail-heavy clusters with their labels, as a text table."""
    heavy = clusters[(clusters["size"] >= min_size) & (clusters["tail_share"] >= 0.8)]
    heavy = heavy.sort_values("size", ascending=False).head(top)
    lines = [f"{'cluster':>7} {'size':>6} {'tail%':>6} {'cold':>5} {'mean_pop':>8}  label"]
    for row in heavy.itertuples():
        lines.append(f"{row.cluster:>7} {row.size:>6} {100 * row.tail_share:>5.0f}% {row.cold:>5} "
                     f"{row.mean_popularity:>8.1f}  {row.label}")
    return "\n".join(lines)

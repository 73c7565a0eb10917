"""Catalog enrichment: the category of items whose category is empty, predicted from their text embeddings by a
classifier trained on the items that have one (scikit-learn logistic regression).

The classifier sees embeddings of the item text *without* the category field: the embedding stage's vectors include
the category of labelled items, and a model scored on those would be judged on the answer it was given. Its quality
is cross-validated on the labelled items (accuracy and macro-F1 next to the majority-class baseline). Predictions at
or above `discover.enrich_min_confidence` are used by the ranker's features (`feature_catalog`), marked as inferred
in `item_segments.parquet` (`category_source`: given | inferred | none); a given category is never overwritten.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ray_longtail.config import Config
from ray_longtail.data import schema as S

log = logging.getLogger(__name__)
INFERRED, CONFIDENCE, SOURCE = "category_inferred", "category_confidence", "category_source"


class CategoryClassifier:
    """Multinomial logistic regression over unit item vectors. `fit(vectors (n, d), labels (n,) str)` keeps the
    classes with at least `min_class_items` items; `cv_` holds the cross-validated accuracy and macro-F1 and the
    majority baseline's; `predict(vectors) -> (labels, confidences)`."""

    def __init__(self, min_class_items: int = 5, cv_folds: int = 5, c: float = 10.0, seed: int = 0):
        self.min_class_items = min_class_items
        self.cv_folds = cv_folds
        self.c = c
        self.seed = seed

    def fit(self, vectors: np.ndarray, labels: np.ndarray) -> CategoryClassifier:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        counts = pd.Series(labels).value_counts()
        self.classes_ = np.sort(counts[counts >= self.min_class_items].index.to_numpy().astype(str))
        keep = np.isin(labels, self.classes_)
        x, y = vectors[keep], labels[keep].astype(str)
        if len(self.classes_) < 2:
            raise ValueError(f"{len(self.classes_)} categories with at least {self.min_class_items} items")
        folds = int(min(self.cv_folds, pd.Series(y).value_counts().min()))
        model = LogisticRegression(C=self.c, max_iter=2000)
        predicted = cross_val_predict(model, x, y, cv=StratifiedKFold(max(folds, 2), shuffle=True,
                                                                      random_state=self.seed))
        majority = np.full(len(y), pd.Series(y).value_counts().index[0])
        self.cv_ = {"items": int(len(y)), "classes": int(len(self.classes_)), "folds": max(folds, 2),
                    "accuracy": float(accuracy_score(y, predicted)),
                    "macro_f1": float(f1_score(y, predicted, average="macro")),
                    "majority_accuracy": float(accuracy_score(y, majority)),
                    "majority_macro_f1": float(f1_score(y, majority, average="macro"))}
        self.model_ = model.fit(x, y)
        return self

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = self.model_.predict_proba(vectors)
        return self.model_.classes_[proba.argmax(axis=1)], proba.max(axis=1)


def category_blind_vectors(catalog: pd.DataFrame, config: Config, vectors: np.ndarray | None,
                           model: str | None) -> np.ndarray:
    """Item vectors of the text without its category: the run's own `vectors` when the category is not embedded,
    else the catalog embedded (in process) with `model` (the run's encoder) without that field."""
    fields = [f for f in config.embed.text_fields if f != S.CATEGORY]
    if len(fields) == len(config.embed.text_fields) and vectors is not None:
        return vectors
    from ray_longtail.embed import item_texts, make_encoder

    encoder = make_encoder(model or config.embed.model, max_length=config.embed.max_length,
                           runtime=config.embed.runtime)
    return encoder.encode(item_texts(catalog, fields), batch_size=config.embed.batch_size)


def enrich_categories(catalog: pd.DataFrame, vectors: np.ndarray | None, config: Config,
                      model: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(frame aligned to `catalog`: category_inferred, category_confidence, category_source; report). Nothing is
    predicted (and no embedding is spent) unless some items have a category and some do not."""
    given = catalog[S.CATEGORY].fillna("").astype(str).str.strip() if S.CATEGORY in catalog else \
        pd.Series("", index=catalog.index)
    labelled, empty = (given != "").to_numpy(), (given == "").to_numpy()
    frame = pd.DataFrame({INFERRED: pd.Series([None] * len(catalog), dtype=object), CONFIDENCE: np.nan,
                          SOURCE: np.where(labelled, "given", "none")})
    report: dict[str, Any] = {"labelled": int(labelled.sum()), "empty": int(empty.sum())}
    if not config.discover.enrich_categories or not labelled.any() or not empty.any():
        return frame, report | {"skipped": "nothing to predict" if config.discover.enrich_categories else "disabled"}
    blind = category_blind_vectors(catalog, config, vectors, model)
    try:
        classifier = CategoryClassifier(config.discover.enrich_min_class_items, seed=config.seed).fit(
            blind[labelled], given.to_numpy()[labelled])
    except ValueError as exc:
        return frame, report | {"skipped": f"too few labelled items per category: {exc}"}
    labels, confidence = classifier.predict(blind[empty])
    confident = confidence >= config.discover.enrich_min_confidence
    rows = np.flatnonzero(empty)
    frame.loc[rows, INFERRED] = labels
    frame.loc[rows, CONFIDENCE] = confidence
    frame.loc[rows[confident], SOURCE] = "inferred"
    log.info("enrichment: %d of %d empty categories inferred (cv accuracy %.3f, majority %.3f)",
             int(confident.sum()), int(empty.sum()), classifier.cv_["accuracy"], classifier.cv_["majority_accuracy"])
    return frame, report | {"cv": classifier.cv_, "inferred": int(confident.sum()),
                            "min_confidence": config.discover.enrich_min_confidence}


def feature_catalog(catalog: pd.DataFrame, segments: pd.DataFrame | None) -> pd.DataFrame:
    """The catalog the ranker's features read: empty categories filled with the confident inferred ones of
    `segments` (item_segments.parquet, catalog order); unchanged without enrichment columns."""
    if segments is None or SOURCE not in segments.columns:
        return catalog
    inferred = (segments[SOURCE] == "inferred").to_numpy()
    if not inferred.any():
        return catalog
    category = catalog[S.CATEGORY].astype(object).to_numpy().copy() if S.CATEGORY in catalog else \
        np.full(len(catalog), None, dtype=object)
    category[inferred] = segments[INFERRED].to_numpy()[inferred]
    return catalog.assign(**{S.CATEGORY: category})


def enrich_file(items_uri: str, out: str, config: Config) -> dict[str, Any]:
    """`ray-longtail enrich`: a catalog file (cleaned as `ingest` cleans it) -> `out` Parquet with item_id, the given
    category and the enrichment columns; returns the report."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ray_longtail.artifacts import resolve_filesystem
    from ray_longtail.data.ingest import clean_items
    from ray_longtail.data.read import read_table

    catalog, _ = clean_items(read_table(items_uri), items_uri, config.data)
    frame, report = enrich_categories(catalog, None, config)
    given = catalog[S.CATEGORY] if S.CATEGORY in catalog else pd.Series(None, index=catalog.index, dtype=object)
    table = pd.concat([catalog[[S.ITEM_ID]].reset_index(drop=True), given.rename(S.CATEGORY).reset_index(drop=True),
                       frame.reset_index(drop=True)], axis=1)
    fs, path = resolve_filesystem(out)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path, filesystem=fs)
    return report

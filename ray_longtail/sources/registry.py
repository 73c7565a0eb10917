"""The source registry: one entry per candidate source (its name in configs and artifacts, its name in the
quality table, and how to build it from the `retrieve` config section). Adding a source is one class plus one
entry here; `retrieve.sources` names the sources of the candidate union, `eval.baselines` the ones reported
alone as baselines, and every source named in either is fitted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ray_longtail.config import RetrieveConfig
from ray_longtail.errors import ConfigError
from ray_longtail.history import History, SourceContext
from ray_longtail.sources.base import CandidateSource
from ray_longtail.sources.collaborative import ALS, EASE, ItemKNN, MostPopular
from ray_longtail.sources.content import ContentKNN, TailExplore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    name: str
    display: str
    build: Callable[[RetrieveConfig, int], CandidateSource]


REGISTRY: dict[str, SourceSpec] = {spec.name: spec for spec in (
    SourceSpec("popular", "MostPopular", lambda c, seed: MostPopular()),
    SourceSpec("itemknn", "ItemKNN", lambda c, seed: ItemKNN(neighbors=c.itemknn_neighbors)),
    SourceSpec("ease", "EASE", lambda c, seed: EASE(l2=c.ease_lambda, max_items=c.ease_max_items)),
    SourceSpec("als", "ALS", lambda c, seed: ALS(factors=c.als_factors, iterations=c.als_iterations,
                                                  regularization=c.als_regularization, seed=seed)),
    SourceSpec("content", "ContentKNN", lambda c, seed: ContentKNN()),
    SourceSpec("tail_explore", "TailExplore", lambda c, seed: TailExplore(n_clusters=c.tail_explore_clusters)),
)}


def check_source_names(names: Iterable[str], key: str) -> None:
    """ConfigError naming `key` when a name is not a registered source."""
    for name in names:
        if name not in REGISTRY:
            raise ConfigError(f"config key {key!r}: unknown source {name!r}; known: {', '.join(REGISTRY)}")


def display_name(name: str) -> str:
    """The source's row name in the quality table (e.g. `ease` -> `EASE`)."""
    return REGISTRY[name].display


def make_sources(config: RetrieveConfig, names: Iterable[str], seed: int = 0) -> list[CandidateSource]:
    """Unfitted sources named in `names`, with their parameters from the `retrieve` section."""
    names = list(names)
    check_source_names(names, "retrieve.sources")
    return [REGISTRY[name].build(config, seed) for name in names]


def fit_sources(sources: Iterable[CandidateSource], history: History, context: SourceContext) -> list:
    fitted = []
    for source in sources:
        fitted.append(source.fit(history, context))
        log.info("fitted source %s", source.name)
    return fitted

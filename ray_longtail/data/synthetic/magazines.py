"""The magazines catalogue: items with list-valued category, description paragraphs, and also_buy /
also_view lists derived from the generated ratings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_longtail.data import schema as S
from ray_longtail.data.synthetic.catalog import Catalog, draw_brands, draw_first_seen, draw_popularity
from ray_longtail.data.synthetic.magazine_words import (
    EDITORIAL_STYLES,
    FORMATS,
    FREQUENCIES,
    GENRES,
    MAGAZINE_ROOT,
    PUBLISHER_SUFFIXES,
    SUBSCRIPTION_FILLER,
)
from ray_longtail.data.synthetic.profiles import MagazineCatalog, Profile
from ray_longtail.data.synthetic.vectorised import (
    GroupSampler,
    by_template,
    fill_template,
    first_occurrence,
    group_ids,
    make_ids,
    padded_table,
    pick_from,
    strings,
)

ALSO_BUY, ALSO_VIEW = "also_buy", "also_view"
LIST_COLUMNS = (S.CATEGORY, S.DESCRIPTION, ALSO_BUY, ALSO_VIEW)  # list<string> in the magazines catalogue
CSV_SEPARATORS = {S.CATEGORY: " > "}  # how CSV output joins a list cell; other list columns: a space

_MAG_TITLES = (
    "{Topic} {Noun}",
    "{Style} {Topic}",
    "The {Topic} {Noun}",
    "{Noun}: {Topic} ({Format})",
    "{Style} {Noun} - {Topic}",
    "{publisher} {Topic} {Noun}",
)
_MAG_TITLE_HAS_STYLE = np.array([False, True, False, False, True, False])
_MAG_TITLE_P = np.array([0.25, 0.15, 0.2, 0.15, 0.1, 0.15])
_MAG_INTROS = (
    "{title} is the {style} magazine for everyone who loves {topic}.",
    "Published {frequency} by {publisher}, {title} brings you the best of {topic} and {topic2}.",
    "For more than {years} years {title} has been the trusted read for {topic} enthusiasts.",
    "Every issue of {title} is packed with {style} coverage of {topic}, from {topic2} to {topic3}.",
)
_MAG_SENTENCES = (
    "Inside each issue you will find features on {topic}, {topic2} and {topic3}.",
    "Our writers cover {topic} with the depth and care it deserves.",
    "Regular columns on {topic2} and {topic} keep you up to date all year round.",
    "Readers who follow {topic} rely on our {style} reporting and honest reviews.",
    "Expert contributors share their best advice on {topic2}, from first steps to advanced technique.",
    "A special section every season is devoted to {topic}.",
    "Long-form stories, interviews and {style} guides to {topic} fill every page.",
    "You will also find news, letters and reader photos about {topic2}.",
    "{publisher} publishes {title} {frequency} for readers who care about {topic}.",
    "Subscribe to {title} and never miss an issue about {topic}.",
)
_MAG_KIND_P = (0.3, 0.3, 0.4)  # later sentences: topic template, genre sentence, subscription filler


@dataclass(frozen=True)
class MagazineTables:
    """Magazine vocabularies as pyarrow arrays and per-genre choice tables. Field names match `RetailTables` where
    `make_users` reads them: `materials` are the topic words, `styles` the editorial styles."""

    paths: pa.Array  # (L,) list<string>: MAGAZINE_ROOT, group, ..., genre
    groups: np.ndarray  # (L,) id of the genre's group (second path level); publishers specialise in one
    n_groups: int
    base_price: np.ndarray  # (L,)
    nouns_title: pa.Array
    materials: pa.Array
    materials_title: pa.Array
    styles: pa.Array
    styles_title: pa.Array
    formats: pa.Array
    frequencies: pa.Array
    sentences: pa.Array
    filler: pa.Array
    leaf_nouns: tuple[np.ndarray, np.ndarray]  # (L, K) global ids, (L,) counts
    leaf_materials: tuple[np.ndarray, np.ndarray]
    leaf_styles: tuple[np.ndarray, np.ndarray]  # every genre: all editorial styles
    leaf_sentences: tuple[np.ndarray, np.ndarray]


@lru_cache(maxsize=1)
def magazine_tables() -> MagazineTables:
    topics = {t: i for i, t in enumerate(dict.fromkeys(t for g in GENRES for t in g.topics))}
    groups = {name: i for i, name in enumerate(dict.fromkeys(g.path[0] for g in GENRES))}

    return MagazineTables(
        paths=pa.array([[MAGAZINE_ROOT, *g.path] for g in GENRES], type=pa.list_(pa.string())),
        groups=np.array([groups[g.path[0]] for g in GENRES]),
        n_groups=len(groups),
        base_price=np.array([g.price for g in GENRES], dtype=np.float64),
        nouns_title=strings(n for g in GENRES for n in g.nouns),
        materials=strings(topics),
        materials_title=pc.utf8_title(strings(topics)),
        styles=strings(EDITORIAL_STYLES),
        styles_title=pc.utf8_title(strings(EDITORIAL_STYLES)),
        formats=strings(FORMATS),
        frequencies=strings(FREQUENCIES),
        sentences=strings(x for g in GENRES for x in g.sentences),
        filler=strings(SUBSCRIPTION_FILLER),
        leaf_nouns=group_ids(GENRES, "nouns"),
        leaf_materials=padded_table([[topics[t] for t in g.topics] for g in GENRES]),
        leaf_styles=padded_table([list(range(len(EDITORIAL_STYLES)))] * len(GENRES)),
        leaf_sentences=group_ids(GENRES, "sentences"),
    )


def make_magazines(rng: np.random.Generator, n_items: int, t_start: int, t_end: int, profile: Profile) -> Catalog:
    """The magazines catalogue: like `make_items`, with topic words in the part of materials, publishers in the
    part of brands, list-valued category and description, and prices that are sometimes missing."""
    T, params = magazine_tables(), profile.catalog
    n, n_leaves = n_items, len(GENRES)
    leaf = rng.choice(n_leaves, size=n, p=rng.dirichlet(np.full(n_leaves, 2.5)))
    noun = pick_from(T.leaf_nouns, leaf, rng.random(n))
    topic_ids, topic_counts = T.leaf_materials
    slot = (rng.random(n) * topic_counts[leaf]).astype(np.int64)  # the item's topic: its slot in the genre's list
    topic = topic_ids[leaf, slot]
    style = rng.integers(len(EDITORIAL_STYLES), size=n)
    fmt, frequency = rng.integers(len(FORMATS), size=n), rng.integers(len(FREQUENCIES), size=n)
    names, group, brand_price = draw_brands(rng, n, T.n_groups, PUBLISHER_SUFFIXES)
    brand_weight = 1.0 / (rng.permutation(len(group)) + 1.0) ** 0.8
    publisher = GroupSampler(group, brand_weight, T.n_groups).sample(T.groups[leaf], rng.random(n))
    price = T.base_price[leaf] * brand_price[publisher] * np.exp(rng.normal(0.0, 0.45, n))
    price = np.where(rng.random(n) < params.price_missing_share, np.nan, np.maximum(np.round(price), 1.0) - 0.01)
    first_seen = draw_first_seen(rng, n, t_start, t_end, profile)
    weight = draw_popularity(rng, n)
    template = rng.choice(len(_MAG_TITLES), size=n, p=_MAG_TITLE_P)
    words = {
        "Noun": lambda r: pc.take(T.nouns_title, noun[r]),
        "Topic": lambda r: pc.take(T.materials_title, topic[r]),
        "topic": lambda r: pc.take(T.materials, topic[r]),
        "Style": lambda r: pc.take(T.styles_title, style[r]),
        "style": lambda r: pc.take(T.styles, style[r]),
        "Format": lambda r: pc.take(T.formats, fmt[r]),
        "frequency": lambda r: pc.take(T.frequencies, frequency[r]),
        "publisher": lambda r: pc.take(names, publisher[r]),
    }
    title = by_template(template, len(_MAG_TITLES), lambda k, r: fill_template(_MAG_TITLES[k], words, r))
    words["title"] = lambda r: pc.take(title, r)
    years = pc.cast(pa.array(rng.integers(3, 90, size=n)), pa.string())
    words["years"] = lambda r: pc.take(years, r)
    table = pa.table({
        S.ITEM_ID: make_ids("MAG", n),
        S.TITLE: title,
        S.DESCRIPTION: _magazine_descriptions(rng, leaf, slot, words, params),
        S.CATEGORY: pc.take(T.paths, leaf),
        S.BRAND: pc.take(names, publisher),
        S.PRICE: pa.array(price, type=pa.float64()),
        S.FIRST_SEEN: pa.array(first_seen, type=pa.int64()),
    })
    style_attr = np.where(_MAG_TITLE_HAS_STYLE[template], len(T.materials) + style, -1)
    return Catalog(leaf=leaf, material=topic, style=style_attr, consumable=np.zeros(n, dtype=bool),
                    first_seen=first_seen, weight=weight, quality=rng.normal(0.0, 0.5, n), table=table)


def _magazine_descriptions(rng: np.random.Generator, leaf: np.ndarray, slot: np.ndarray, words: dict,
                           params: MagazineCatalog) -> pa.Array:
    """(n,) list<string> of paragraphs. The first sentence introduces the title and its topic; later ones are topic
    templates (the item's topic and two other topics of its genre), genre sentences and subscription boilerplate,
    cycled so that a description rarely repeats a sentence. leaf, slot: (n,) genre and topic slot of each item;
    words: item-level word functions of `make_magazines`."""
    T, n = magazine_tables(), len(leaf)
    n_par = np.minimum(1 + rng.poisson(params.extra_paragraphs, n), params.max_paragraphs)
    n_par[rng.random(n) < params.empty_description_share] = 0
    par_item = np.repeat(np.arange(n), n_par)
    par_len = rng.integers(params.sentences[0], params.sentences[1] + 1, size=len(par_item))
    item = np.repeat(par_item, par_len)  # item of each sentence, sentences in item order
    m, n_intro, n_templates = len(item), len(_MAG_INTROS), len(_MAG_INTROS) + len(_MAG_SENTENCES)
    first = _rank_within(item) == 0
    kind = np.where(first, -1, rng.choice(3, size=m, p=_MAG_KIND_P))
    # every kind is cycled from a random start per item, so a description rarely repeats a sentence
    start = rng.integers(1 << 30, size=n)[item]
    rank = np.zeros(m, dtype=np.int64)
    for k in range(3):
        rows = np.flatnonzero(kind == k)
        rank[rows] = _rank_within(item[rows])
    sentence_ids, sentence_counts = T.leaf_sentences
    genre_sentence = sentence_ids[leaf[item], (start + rank) % sentence_counts[leaf[item]]]
    filler = (start + rank) % len(SUBSCRIPTION_FILLER)
    template = np.select([first, kind == 0, kind == 1], [start % n_intro, n_intro + (start + rank) % len(
        _MAG_SENTENCES), n_templates], n_templates + 1)
    topic_ids, topic_counts = T.leaf_materials
    count = np.maximum(topic_counts[leaf[item]], 3)  # offsets of two other topics, distinct from the item's
    second = 1 + (rng.random(m) * (count - 1)).astype(np.int64)
    third = 1 + (second + (rng.random(m) * (count - 2)).astype(np.int64)) % (count - 1)
    own = slot[item]
    other = [topic_ids[leaf[item], (own + offset) % topic_counts[leaf[item]]] for offset in (second, third)]
    row_words = {name: (lambda r, f=f: f(item[r])) for name, f in words.items()}
    row_words["topic2"] = lambda r: pc.take(T.materials, other[0][r])
    row_words["topic3"] = lambda r: pc.take(T.materials, other[1][r])
    templates = _MAG_INTROS + _MAG_SENTENCES

    def build(k: int, rows: np.ndarray) -> pa.Array:
        if k < n_templates:
            return fill_template(templates[k], row_words, rows)
        return pc.take(T.sentences, genre_sentence[rows]) if k == n_templates else pc.take(T.filler, filler[rows])

    sentences = by_template(template, n_templates + 2, build) if m else pa.array([], type=pa.string())
    paragraphs = pc.binary_join(_lists(np.repeat(np.arange(len(par_item)), par_len), sentences, len(par_item)), " ")
    return _lists(par_item, paragraphs, n)


def _lists(owner: np.ndarray, values: pa.Array, n: int) -> pa.Array:
    """(n,) list array whose list i holds the values of the rows with owner i. owner: (m,) sorted; values: (m,)."""
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _rank_within(group: np.ndarray) -> np.ndarray:
    """(n,) position of each element within its run of equal values. group: (n,) sorted."""
    if not len(group):
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(group)) + 1])
    return np.arange(len(group)) - np.repeat(starts, np.diff(np.append(starts, len(group))))


def related_items(rng: np.random.Generator, catalog: Catalog, user: np.ndarray, item: np.ndarray, ts: np.ndarray,
             params: MagazineCatalog) -> tuple[pa.Array, pa.Array]:
    """(also_buy, also_view), each (n_items,) list<string> of item ids, like the lists of Amazon metadata.

    also_buy: the items most often interacted with by the same user within `also_buy_window` rows (empty for items
    whose users came once); computed from the whole log, as the scraped lists are, so they know the future.
    also_view: items of the same genre (half of the draws: also of the same topic), popularity-weighted; cold items
    get a floor weight, since they are viewed without being bought. user, item, ts: (m,) the interaction rows.
    """
    n = len(catalog.leaf)
    ids = catalog.table[S.ITEM_ID].combine_chunks()
    order = np.lexsort((ts, user))
    u, it = user[order], item[order]
    a_parts, b_parts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for k in range(1, params.also_buy_window + 1):  # both directions of each pair (row, the user's k-th next row)
        same = u[k:] == u[:-k]
        a_parts += [it[:-k][same], it[k:][same]]
        b_parts += [it[k:][same], it[:-k][same]]
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    key, count = np.unique((a * n + b)[a != b], return_counts=True)
    a, b = key // n, key % n
    order = np.lexsort((rng.random(len(a)), -count, a))  # per item: most co-interacted first, ties at random
    a, b = a[order], b[order]
    keep = _rank_within(a) < params.also_buy_max
    also_buy = _lists(a[keep], pc.take(ids, pa.array(b[keep])), n)

    k = np.where(rng.random(n) < params.also_view_empty_share, 0, 1 + rng.poisson(params.also_view_mean - 1, n))
    owner = np.repeat(np.arange(n), k)
    weight = catalog.weight + 0.1 * catalog.weight.mean() + 1e-12
    n_topics = len(magazine_tables().materials)
    by_topic = GroupSampler(catalog.leaf * n_topics + catalog.material, weight, len(GENRES) * n_topics)
    by_genre = GroupSampler(catalog.leaf, weight, len(GENRES))
    draw = np.where(rng.random(len(owner)) < 0.5,
                    by_topic.sample((catalog.leaf * n_topics + catalog.material)[owner], rng.random(len(owner))),
                    by_genre.sample(catalog.leaf[owner], rng.random(len(owner))))
    keep = first_occurrence(owner * n + draw)
    keep = keep[draw[keep] != owner[keep]]
    return also_buy, _lists(owner[keep], pc.take(ids, pa.array(draw[keep])), n)

"""The retail catalogue: vocabulary tables, per-leaf word choices, titles, descriptions, brands, prices,
popularity and first-seen times of every item, vectorised over the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_longtail.data import schema as S
from ray_longtail.data.synthetic.profiles import COLD_SHARE, DAY, ZIPF_EXPONENT, ZIPF_OFFSET, Profile
from ray_longtail.data.synthetic.retail_words import (
    ADJECTIVES,
    BRAND_HEADS,
    BRAND_SUFFIXES,
    BRAND_TAILS,
    CARE_STYLES,
    COLOURS,
    FILLER,
    FOOD_SIZES,
    GENERAL_STYLES,
    LEAVES,
    LIQUID_SIZES,
)
from ray_longtail.data.synthetic.vectorised import (
    GroupSampler,
    by_template,
    fill_template,
    group_ids,
    join_text,
    make_ids,
    padded_table,
    pick_from,
    strings,
)

_GOODS_TITLES, _CARE_TITLES = 5, 3  # title templates (see _titles); style word only in templates 0, 2, 4, 5, 6
_TITLE_HAS_STYLE = np.array([True, False, True, False, True, True, True, False])
_TITLE_P = np.array([0.25, 0.2, 0.15, 0.2, 0.2, 0.4, 0.35, 0.25])


@dataclass(frozen=True)
class RetailTables:
    """Vocabularies as pyarrow string arrays and per-leaf choice tables (padded index arrays + counts)."""

    paths: pa.Array
    contexts: pa.Array
    departments: np.ndarray  # (L,) department id of each leaf
    n_departments: int
    consumable: np.ndarray  # (L,) bool
    base_price: np.ndarray  # (L,) float
    nouns: pa.Array
    nouns_title: pa.Array
    materials: pa.Array
    materials_title: pa.Array
    styles: pa.Array
    styles_title: pa.Array
    variants: pa.Array
    variants_title: pa.Array
    adjectives: pa.Array
    adjectives_title: pa.Array
    uses: pa.Array
    features: pa.Array
    filler: pa.Array
    leaf_nouns: tuple[np.ndarray, np.ndarray]  # (L, K) global ids, (L,) counts
    leaf_materials: tuple[np.ndarray, np.ndarray]
    leaf_styles: tuple[np.ndarray, np.ndarray]
    leaf_variants: tuple[np.ndarray, np.ndarray]
    leaf_uses: tuple[np.ndarray, np.ndarray]
    leaf_features: tuple[np.ndarray, np.ndarray]


@lru_cache(maxsize=1)
def retail_tables() -> RetailTables:
    def vocab(words: list[str]) -> dict[str, int]:
        return {w: i for i, w in enumerate(dict.fromkeys(words))}

    materials = vocab([m for leaf in LEAVES for m in leaf.materials])
    styles = vocab(list(GENERAL_STYLES + CARE_STYLES))
    variants = vocab(list(COLOURS + LIQUID_SIZES + FOOD_SIZES))
    departments = vocab([leaf.path.split(" > ")[0] for leaf in LEAVES])
    nouns = [n for leaf in LEAVES for n in leaf.nouns]
    uses = [x for leaf in LEAVES for x in leaf.uses]
    features = [x for leaf in LEAVES for x in leaf.features]

    variants_title = [v.title() if v in COLOURS else v for v in variants]
    return RetailTables(
        paths=strings(leaf.path for leaf in LEAVES),
        contexts=strings(leaf.context for leaf in LEAVES),
        departments=np.array([departments[leaf.path.split(" > ")[0]] for leaf in LEAVES]),
        n_departments=len(departments),
        consumable=np.array([leaf.consumable for leaf in LEAVES]),
        base_price=np.array([leaf.price for leaf in LEAVES], dtype=np.float64),
        nouns=strings(nouns),
        nouns_title=pc.utf8_title(strings(nouns)),
        materials=strings(materials),
        materials_title=pc.utf8_title(strings(materials)),
        styles=strings(styles),
        styles_title=pc.utf8_title(strings(styles)),
        variants=strings(variants),
        variants_title=strings(variants_title),
        adjectives=strings(ADJECTIVES),
        adjectives_title=pc.utf8_title(strings(ADJECTIVES)),
        uses=strings(uses),
        features=strings(features),
        filler=strings(FILLER),
        leaf_nouns=group_ids(LEAVES, "nouns"),
        leaf_materials=padded_table([[materials[m] for m in leaf.materials] for leaf in LEAVES]),
        leaf_styles=padded_table([[styles[s] for s in leaf.styles] for leaf in LEAVES]),
        leaf_variants=padded_table([[variants[v] for v in leaf.variants] for leaf in LEAVES]),
        leaf_uses=group_ids(LEAVES, "uses"),
        leaf_features=group_ids(LEAVES, "features"),
    )


def draw_brands(rng: np.random.Generator, n_items: int, n_departments: int, suffixes: tuple[str, ...] = BRAND_SUFFIXES
            ) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Brand names (B,), department of each brand (B,), price multiplier of each brand (B,)."""
    combos = [h + t + s for s in suffixes for h in BRAND_HEADS for t in BRAND_TAILS]
    n_brands = int(np.clip(n_items // 40, 3 * n_departments, len(combos) // 2))
    p = np.where(np.arange(len(combos)) < len(BRAND_HEADS) * len(BRAND_TAILS), 4.0, 1.0)
    names = np.asarray(combos, dtype=object)[rng.choice(len(combos), size=n_brands, replace=False, p=p / p.sum())]
    department = rng.permutation(np.arange(n_brands) % n_departments)
    return pa.array(list(names), type=pa.string()), department, np.exp(rng.normal(0.0, 0.3, n_brands))


@dataclass
class Catalog:
    """Per-item arrays, all (n_items,)."""

    leaf: np.ndarray
    material: np.ndarray  # attribute id of the material word (in every title)
    style: np.ndarray  # attribute id of the style word, -1 when the title has none
    consumable: np.ndarray
    first_seen: np.ndarray
    weight: np.ndarray  # popularity weight, 0 for cold items
    quality: np.ndarray  # rating offset
    table: pa.Table  # the items table of the output


def draw_first_seen(rng: np.random.Generator, n: int, t_start: int, t_end: int, profile: Profile) -> np.ndarray:
    """(n,) first_seen_ts: catalog items before the span, others spread over it, a late batch near its end (the
    items that are cold for a model trained before them)."""
    span = t_end - t_start
    catalog, late = profile.catalog_share, profile.late_share
    kind = rng.choice(3, size=n, p=[catalog, 1.0 - catalog - late, late])
    late_start = t_end - max(int(span * profile.late_window), DAY)
    lo = np.select([kind == 0, kind == 1], [t_start - 2 * 365 * DAY, t_start], late_start)
    hi = np.select([kind == 0, kind == 1], [t_start, late_start], t_end - 3600)
    first_seen = (lo + rng.random(n) * (hi - lo)).astype(np.int64)
    return first_seen - first_seen % profile.time_step if profile.time_step > 1 else first_seen


def draw_popularity(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) Zipf-like popularity weights over a random ranking; COLD_SHARE of the items (never among the top 30%)
    get 0, so they are never interacted with."""
    rank = rng.permutation(n)
    weight = (rank + ZIPF_OFFSET) ** -ZIPF_EXPONENT
    tail = np.flatnonzero(rank >= int(0.3 * n))
    weight[rng.choice(tail, size=min(len(tail), int(round(COLD_SHARE * n))), replace=False)] = 0.0
    return weight


def make_items(rng: np.random.Generator, n_items: int, t_start: int, t_end: int, profile: Profile) -> Catalog:
    T = retail_tables()
    n, n_leaves, n_materials = n_items, len(LEAVES), len(T.materials)
    leaf_share = rng.dirichlet(np.full(n_leaves, 2.5))
    leaf = rng.choice(n_leaves, size=n, p=leaf_share)
    noun = pick_from(T.leaf_nouns, leaf, rng.random(n))
    material = pick_from(T.leaf_materials, leaf, rng.random(n))
    style = pick_from(T.leaf_styles, leaf, rng.random(n))
    variant = pick_from(T.leaf_variants, leaf, rng.random(n))
    adjective = rng.integers(len(ADJECTIVES), size=n)
    consumable = T.consumable[leaf]

    brand_names, brand_department, brand_price = draw_brands(rng, n, T.n_departments)
    brand_weight = 1.0 / (rng.permutation(len(brand_department)) + 1.0) ** 0.8
    brand_sampler = GroupSampler(brand_department, brand_weight, T.n_departments)
    brand = brand_sampler.sample(T.departments[leaf], rng.random(n))

    price = T.base_price[leaf] * brand_price[brand] * np.exp(rng.normal(0.0, 0.45, n))
    price = np.maximum(np.round(price), 1.0) - 0.01

    first_seen = draw_first_seen(rng, n, t_start, t_end, profile)
    weight = draw_popularity(rng, n)

    template = np.where(consumable, _GOODS_TITLES + rng.choice(_CARE_TITLES, size=n, p=_TITLE_P[_GOODS_TITLES:]),
                        rng.choice(_GOODS_TITLES, size=n, p=_TITLE_P[:_GOODS_TITLES]))
    words = {
        "brand": lambda r: pc.take(brand_names, brand[r]),
        "Noun": lambda r: pc.take(T.nouns_title, noun[r]),
        "noun": lambda r: pc.take(T.nouns, noun[r]),
        "Material": lambda r: pc.take(T.materials_title, material[r]),
        "material": lambda r: pc.take(T.materials, material[r]),
        "Style": lambda r: pc.take(T.styles_title, style[r]),
        "style": lambda r: pc.take(T.styles, style[r]),
        "Variant": lambda r: pc.take(T.variants_title, variant[r]),
        "variant": lambda r: pc.take(T.variants, variant[r]),
        "Adj": lambda r: pc.take(T.adjectives_title, adjective[r]),
        "adj": lambda r: pc.take(T.adjectives, adjective[r]),
        "context": lambda r: pc.take(T.contexts, leaf[r]),
    }
    title = by_template(template, _GOODS_TITLES + _CARE_TITLES, lambda k, r: fill_template(_TITLES[k], words, r))
    description = _descriptions(rng, n, leaf, consumable, words)

    table = pa.table({
        S.ITEM_ID: make_ids("SKU", n),
        S.TITLE: title,
        S.DESCRIPTION: description,
        S.CATEGORY: pc.take(T.paths, leaf),
        S.BRAND: pc.take(brand_names, brand),
        S.PRICE: pa.array(price, type=pa.float64()),
        S.FIRST_SEEN: pa.array(first_seen, type=pa.int64()),
    })
    style_attr = np.where(_TITLE_HAS_STYLE[template], n_materials + style, -1)
    return Catalog(leaf=leaf, material=material, style=style_attr, consumable=consumable, first_seen=first_seen,
                    weight=weight, quality=rng.normal(0.0, 0.5, n), table=table)


# Templates: "{name}" is a word from `words` in make_items; everything else is literal.
_TITLES = (
    "{brand} {Style} {Material} {Noun}",
    "{Adj} {Variant} {Material} {Noun}",
    "{Material} {Noun} - {Style}, {Variant}",
    "{brand} {Noun} in {Variant} {Material}",
    "{Style} {Material} {Noun} by {brand}",
    "{brand} {Style} {Material} {Noun}, {Variant}",
    "{Material} {Noun} by {brand} - {Style}, {Variant}",
    "{Adj} {Material} {Noun} ({Variant})",
)
_INTROS = (
    "This {adj} {noun} from {brand} is made from {material} in a {variant} finish. ",
    "Crafted from {material}, the {brand} {noun} brings a {style} look to your {context}. ",
    "{brand} presents the {adj} {style} {noun} in {variant} {material}. ",
    "Meet the {noun}: our {adj}, {style} take on a {context} classic, finished in {material}. ",
    "This {adj} {noun} from {brand} is made with {material}. ",
    "From {brand}, the {style} {noun} with {material} is a {context} favourite. ",
)
_STYLE_SENTENCES = (
    "Its {style} design feels at home in any {context}. ",
    "Part of our {style} range, made with care. ",
)
_ABOUT = "About {brand}: an independent maker of {style} {material} products for the {context}. "


def _descriptions(rng: np.random.Generator, n: int, leaf: np.ndarray, consumable: np.ndarray, words: dict) -> pa.Array:
    """(n,) descriptions: intro, optional style sentence, a use, 1-2 features, optional spec/about, 1-4 fillers."""
    T = retail_tables()
    empty = pa.scalar("", pa.string())
    intro = np.where(consumable, 4 + rng.integers(2, size=n), rng.integers(4, size=n))
    intro_text = by_template(intro, len(_INTROS), lambda k, r: fill_template(_INTROS[k], words, r))
    style_text = by_template(consumable.astype(np.int64), 2, lambda k, r: fill_template(_STYLE_SENTENCES[k], words, r))
    style_text = pc.if_else(pa.array(rng.random(n) < 0.6), style_text, empty)
    use = join_text(pc.take(T.uses, pick_from(T.leaf_uses, leaf, rng.random(n))), " ")
    feature_ids, feature_counts = T.leaf_features
    first_feature = (rng.random(n) * feature_counts[leaf]).astype(np.int64)
    second_feature = (first_feature + 1) % feature_counts[leaf]
    feature1 = join_text(pc.take(T.features, feature_ids[leaf, first_feature]), " ")
    feature2 = pc.if_else(pa.array((rng.random(n) < 0.5) & (feature_counts[leaf] > 1)),
                          join_text(pc.take(T.features, feature_ids[leaf, second_feature]), " "), empty)
    width, depth = rng.integers(8, 80, size=n), rng.integers(5, 60, size=n)
    spec = pc.if_else(
        pa.array(consumable),
        join_text("Net contents: ", words["variant"](np.arange(n)), ". "),
        join_text("Measures ", pc.cast(pa.array(width), pa.string()), " x ", pc.cast(pa.array(depth), pa.string()),
                  " cm. "))
    spec = pc.if_else(pa.array(rng.random(n) < 0.4), spec, empty)
    about = pc.if_else(pa.array(rng.random(n) < 0.15), fill_template(_ABOUT, words, np.arange(n)), empty)
    n_filler = rng.integers(1, 5, size=n)
    first_filler, step = rng.integers(len(FILLER), size=n), 1 + rng.integers(len(FILLER) - 1, size=n)
    fillers = []
    for j in range(4):
        sentence = join_text(pc.take(T.filler, (first_filler + j * step) % len(FILLER)), " ")
        fillers.append(pc.if_else(pa.array(n_filler > j), sentence, empty))
    text = join_text(intro_text, style_text, use, feature1, feature2, spec, about, *fillers)
    return pc.utf8_rtrim_whitespace(text)

"""Seeded generator of realistic long-tail e-commerce shops at any size (catalog + interactions).

The output follows the data contract of `ray_longtail.data.schema`:

* items: item_id, title, description, category (" > "-joined hierarchy), brand, price, first_seen_ts
* interactions: user_id, item_id, timestamp (int64 unix seconds), event, value

What makes it useful as a long-tail benchmark:

* Item popularity is Zipf-like (heavy head, long tail); a share of the catalog is never interacted with (cold), and
  some items are added late in the time span (first_seen_ts near the end). Every interaction happens at or after its
  item's first_seen_ts.
* Titles and descriptions are built from per-category vocabularies (nouns, materials/ingredients, styles, uses,
  features) plus shared adjectives, colours and generic filler, so items of one category share words.
* Each user has 1-3 preferred leaf categories and one preferred attribute word (a material/ingredient or a style).
  Besides popularity-driven choices, users pick items of their categories whose title carries their attribute word,
  including uniformly chosen tail items and, sometimes, items of other categories: content similarity predicts tail
  purchases. User activity is heavy-tailed (many single-interaction users, a few with hundreds).
* Time runs over `days` days ending at a fixed epoch (2024-01-01 UTC), so the output depends on the seed only; users
  have their own active periods and sometimes buy the same item again.

Profiles (`PROFILES`, `generate_shop(profile=...)`) name kinds of data; every knob is a general mechanism, so that
a pipeline meeting its quality bar on both meets it on data, not on one generator's quirks:

* "retail" (the default, unchanged output for a seed): purchases over one year, flat string columns as above.
* "magazines": an Amazon-style ratings catalogue. 1-5 stars skewed high, 85% of users with exactly one rating and
  a heavy tail of active raters, 17 years at day resolution with activity growing over time, 2,500 items and about
  90,000 ratings by default. Items carry list-valued columns like Amazon metadata dumps: category as a hierarchy
  ["Magazine Subscriptions", group, ..., genre], description as a list of paragraphs (a few hundred words, from
  per-genre vocabularies), also_buy / also_view as lists of item ids (possibly empty); price is sometimes missing.
  Users have genre and topic tastes as in retail, so the text predicts who rates an item.

Everything is vectorised with numpy/pyarrow (loops only over a few modes and rejection rounds): 10^6 items with
10^7 interactions take about 30 s and 3 GB peak RSS (retail).

Modules: `profiles` (named parameter sets), `retail_words` and `magazine_words` (vocabularies), `vectorised`
(per-row picks, weighted draws within groups, template text), `catalog` (the retail catalogue and the draws both
catalogues share: brands, first-seen times, popularity), `magazines` (the list-valued magazines catalogue),
`interactions` (users and their rows), `shop` (`generate_shop`, `write_shop`).
"""

from ray_longtail.data.synthetic.magazine_words import MAGAZINE_ROOT
from ray_longtail.data.synthetic.magazines import ALSO_BUY, ALSO_VIEW, LIST_COLUMNS
from ray_longtail.data.synthetic.profiles import END_TS, EVENTS, PROFILES, MagazineCatalog, Profile, get_profile
from ray_longtail.data.synthetic.shop import generate_shop, write_shop

__all__ = ["ALSO_BUY", "ALSO_VIEW", "END_TS", "EVENTS", "LIST_COLUMNS", "MAGAZINE_ROOT", "PROFILES", "MagazineCatalog",
           "Profile", "generate_shop", "get_profile", "write_shop"]

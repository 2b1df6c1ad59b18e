"""Seeded synthetic behavior logs: single-group (:func:`synthetic_items`) and multi-group with a
planted cross-group signal (:func:`synthetic_multigroup`).

Multi-group data:

Objects (all ids are strings):

* items ``i<k>`` with features ``category`` (``c<j>``) and ``shop`` (``s<m>``); every category
  has ``shops_per_category`` shops and ``items_per_category`` items;
* coupons ``cp<m>_<k>``, issued by a shop, with features ``shop`` and ``category`` (the shop's);
* queries ``q<j>_<k>``: search keywords, each about one category, with no features at all (the
  model has to learn which category a query is about from co-occurrence).

Each user lives through sessions, days apart (exponential gaps, mean ``gap_days``). A session
has one *intent* category, drawn from the user's taste (a Dirichlet(``taste_concentration``)
over categories: with the default 1.0, tastes are mildly peaked, so past items say something,
but not much, about the next one). In a session the user searches a query about the
intent (probability ``p_query``), then may claim a coupon of a shop of the intent
(``p_coupon``), then clicks an item (action ``click``; ``buy`` with probability 0.3) which
belongs to the intent with probability ``p_on_intent`` and is uniform otherwise. Query and
coupon come minutes before the item.

The planted signal: the category of the next item is best told by the *same session's* query
and coupon, which only a model that reads those groups can see. Item-only models see earlier
items, whose categories follow the flat taste. So on this data, multi-group ATRank should beat
item-only ATRank; that is the check it exists for.
"""

from __future__ import annotations

import numpy as np

from .behaviors import BehaviorLog, LogBuilder, RowBuffer

DAY = 86_400


def synthetic_items(n_users: int = 80, n_items: int = 120, n_categories: int = 6,
                    min_len: int = 8, max_len: int = 20, seed: int = 1234) -> BehaviorLog:
    """Single-group toy data: items "i0".., categories "c0".. (item i is in c{i % n_categories}).

    Each user has a favourite category; ~80% of their behaviors are items of it, and they
    "like" those with probability 0.8 (others 0.2). Gaps between behaviors are exponential
    (mean 20 days) with 20% exact ties, so all time buckets and the tie rule get exercised.
    """
    rng = np.random.default_rng(seed)
    b = LogBuilder("synthetic", "item")
    buf = RowBuffer(b)
    for u in range(n_users):
        fav = int(rng.integers(n_categories))
        n = int(rng.integers(min_len, max_len + 1))
        t = 1_000_000_000 + int(rng.integers(0, 10**7))
        used: set[int] = set()
        for _ in range(n):
            pool_fav = [i for i in range(fav, n_items, n_categories) if i not in used]
            pool_all = [i for i in range(n_items) if i not in used]
            pool = pool_fav if (rng.random() < 0.8 and pool_fav) else pool_all
            item = int(pool[int(rng.integers(len(pool)))])
            used.add(item)
            like = rng.random() < (0.8 if item % n_categories == fav else 0.2)
            if rng.random() >= 0.2:
                t += int(rng.exponential(20 * 86400))
            buf.add(f"u{u}", "item", "like" if like else "other", f"i{item}", t)
    buf.flush()
    b.add_catalog("item", [f"i{i}" for i in range(n_items)],
                  {"category": [f"c{i % n_categories}" for i in range(n_items)]})
    return b.build()


def synthetic_multigroup(n_users: int = 400, n_categories: int = 12, items_per_category: int = 30,
                         shops_per_category: int = 3, coupons_per_shop: int = 2,
                         queries_per_category: int = 5, min_sessions: int = 12,
                         max_sessions: int = 30, p_query: float = 0.7, p_coupon: float = 0.5,
                         p_on_intent: float = 0.85, gap_days: float = 6.0,
                         taste_concentration: float = 1.0, seed: int = 1234) -> BehaviorLog:
    rng = np.random.default_rng(seed)
    n_shops = n_categories * shops_per_category
    shop_category = [s // shops_per_category for s in range(n_shops)]
    items_of: list[list[int]] = [[] for _ in range(n_categories)]
    item_catalog: dict[str, dict[str, str]] = {}
    k = 0
    for c in range(n_categories):
        for _ in range(items_per_category):
            shop = c * shops_per_category + int(rng.integers(shops_per_category))
            item_catalog[f"i{k}"] = {"category": f"c{c}", "shop": f"s{shop}"}
            items_of[c].append(k)
            k += 1
    n_items = k
    coupon_catalog = {f"cp{s}_{j}": {"shop": f"s{s}", "category": f"c{shop_category[s]}"}
                      for s in range(n_shops) for j in range(coupons_per_shop)}
    query_catalog: dict[str, dict[str, str]] = {
        f"q{c}_{j}": {} for c in range(n_categories) for j in range(queries_per_category)}

    builder = LogBuilder("synthetic-multigroup", "item")
    for g, cat in (("item", item_catalog), ("coupon", coupon_catalog), ("query", query_catalog)):
        names = sorted({f for v in cat.values() for f in v})
        builder.add_catalog(g, list(cat), {f: [v.get(f) for v in cat.values()] for f in names})
    events = RowBuffer(builder)
    for u in range(n_users):
        user = f"u{u}"
        taste = rng.dirichlet(np.full(n_categories, taste_concentration))
        t = 1_300_000_000 + int(rng.integers(0, 365 * DAY))
        for _ in range(int(rng.integers(min_sessions, max_sessions + 1))):
            t += int(rng.exponential(gap_days * DAY)) + 3600
            intent = int(rng.choice(n_categories, p=taste))
            if rng.random() < p_query:
                q = int(rng.integers(queries_per_category))
                events.add(user, "query", "search", f"q{intent}_{q}", t)
            if rng.random() < p_coupon:
                s = intent * shops_per_category + int(rng.integers(shops_per_category))
                cp = f"cp{s}_{int(rng.integers(coupons_per_shop))}"
                events.add(user, "coupon", "claim", cp, t + 60)
            if rng.random() < p_on_intent:
                item = items_of[intent][int(rng.integers(items_per_category))]
            else:
                item = int(rng.integers(n_items))
            action = "buy" if rng.random() < 0.3 else "click"
            events.add(user, "item", action, f"i{item}", t + 300)
    events.flush()
    return builder.build()

"""The multi-group behavior log: what every data reader produces.

ATRank sees a user as behaviors ``(action, object, time)`` grouped by object type. A
:class:`BehaviorLog` holds them as flat events plus per-group side tables (catalogs) of object
features. Readers (``atrank_export.readers``) turn files into a log; :func:`to_item_dataset`
turns a log's item group into the single-group :class:`~atrank_export.data.Dataset` that the
Amazon-configuration pipeline trains on.

Conventions:

* ``group`` names the object type (``"item"``, ``"coupon"``, ``"query"``, ...). The group
  that candidates come from is ``target_group`` (``"item"`` unless a reader says otherwise).
* ``object_id`` and every feature value are strings (raw ids, exactly as in the logs).
* ``features`` on an event are the caller-visible features of that behavior's object (e.g.
  ``{"category": "Comedy"}``); missing ones fall back to the group's catalog.
* ``timestamp`` is integer unix seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Event:
    user: str
    group: str
    action: str
    object_id: str
    timestamp: int
    features: dict[str, str] = field(default_factory=dict)


@dataclass
class BehaviorLog:
    name: str
    events: list[Event]
    # group -> object id -> feature name -> value
    catalogs: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    target_group: str = "item"

    @property
    def groups(self) -> list[str]:
        return sorted({e.group for e in self.events} | set(self.catalogs))

    def feature_names(self, group: str) -> list[str]:
        names: set[str] = set()
        for feats in self.catalogs.get(group, {}).values():
            names.update(feats)
        for e in self.events:
            if e.group == group:
                names.update(e.features)
        return sorted(names)

    def actions(self) -> list[str]:
        return sorted({e.action for e in self.events})

    def feature(self, event: Event, name: str) -> str | None:
        """The event's feature ``name``: its own value, else the catalog's, else None."""
        if name in event.features:
            return event.features[name]
        return self.catalogs.get(event.group, {}).get(event.object_id, {}).get(name)

    def extend_catalog(self, group: str, rows: Iterable[tuple[str, dict[str, str]]]) -> None:
        table = self.catalogs.setdefault(group, {})
        for object_id, feats in rows:
            table.setdefault(object_id, {}).update(feats)


def to_item_dataset(log: BehaviorLog, group: str | None = None,
                    category_feature: str = "category", actions: list[str] | None = None,
                    seed: int | None = None):
    """The single-group Dataset of ``log``'s ``group`` (default: the target group).

    Category = the event's ``category_feature`` (else the catalog's). Events of other groups
    are dropped. The order rule of :mod:`atrank_export.data` (timestamp, then a seeded random
    tie-break) is applied there.
    """
    from .data import DEFAULT_SEED, _dataset_from_rows

    group = group or log.target_group
    rows = []
    for e in log.events:
        if e.group == group:
            rows.append((e.user, e.object_id, e.action, int(e.timestamp)))
    catalog: dict[str, str | None] = {
        oid: feats.get(category_feature) for oid, feats in log.catalogs.get(group, {}).items()
    }
    for e in log.events:
        if e.group == group and e.object_id not in catalog:
            catalog[e.object_id] = log.feature(e, category_feature)
    acts = actions or sorted({e.action for e in log.events if e.group == group})
    return _dataset_from_rows(log.name, rows, catalog, acts,
                              DEFAULT_SEED if seed is None else seed)

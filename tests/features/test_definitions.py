"""Feature definitions refuse what cannot work, each with the fix in one sentence."""

from __future__ import annotations

from typing import Any

import pytest

import lockgate as lg
from lockgate.features import Count, Entity, FeatureService, FeatureView, ParquetSource

CARD = Entity("card", join_keys=["card_id"])
SOURCE = ParquetSource("data/tx/", event_time="ts", created_time="loaded_at")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": {}}, "needs exactly one of features=, aggregations= or sql="),
        ({"ttl": "0s"}, "ttl must be longer than zero"),
        ({"features": {"n": "int65"}}, "unknown feature type 'int65'"),
        ({"features": {"loaded_at": "int64"}}, "has the name of a join key, the event time or the created time"),
        ({"features": {"card_id": "string"}}, "has the name of a join key"),
        ({"defaults": {"nope": 1}}, "defaults name 'nope'"),
        ({"stale_policy": "default"}, "needs defaults= for every feature"),
        ({"aggregations": [Count("ts", window="1h", name="n")]}, "needs exactly one of"),
    ],
)
def test_a_feature_view_that_cannot_work_is_refused(changes: dict[str, Any], message: str) -> None:
    spec: dict[str, Any] = {
        "name": "card_activity",
        "entities": [CARD],
        "ttl": "7d",
        "source": SOURCE,
        "features": {"n": "int64"},
        **changes,
    }
    with pytest.raises(lg.InvalidInputError, match=message):
        FeatureView(**spec)


def test_versions_follow_content_not_identity() -> None:
    one = FeatureView(name="v", entities=[CARD], ttl="7d", source=SOURCE, features={"n": "int64"})
    same = FeatureView(name="v", entities=[CARD], ttl="168h", source=SOURCE, features={"n": "int64"})
    other = FeatureView(name="v", entities=[CARD], ttl="1d", source=SOURCE, features={"n": "int64"})
    assert one.version == same.version != other.version
    with pytest.raises(lg.InvalidInputError, match="names no feature"):
        FeatureService("empty", [])

"""The offline store on a real S3 server (moto on 127.0.0.1): sources, computed output and
pushed rows on S3, read by DuckDB through pyarrow (never DuckDB's httpfs)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lockgate.config import Settings
from lockgate.data._sources import Source
from lockgate.features import Count, Entity, FeatureView, ParquetSource
from lockgate.features._offline import OfflineStore, compute_view, point_in_time_join

pytestmark = pytest.mark.s3

T0 = datetime(2024, 3, 1, tzinfo=UTC)
CARD = Entity("card", join_keys=["card_id"])


def stamps(hours: list[float]) -> pa.Array:
    return pa.array([T0 + timedelta(hours=h) for h in hours], pa.timestamp("us", tz="UTC"))


def put(s3_admin: Any, bucket: str, key: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3_admin.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())


def test_views_on_s3_join_and_record_their_lineage(s3_bucket: str, s3_admin: Any, s3_env: str) -> None:
    put(
        s3_admin,
        s3_bucket,
        "raw/tx/day=1/part-0.parquet",
        pa.table({"card_id": [1, 1], "ts": stamps([0, 1]), "amount": [5.0, 7.0]}),
    )
    put(
        s3_admin,
        s3_bucket,
        "raw/tx/day=2/part-0.parquet",
        pa.table({"card_id": [2], "ts": stamps([2]), "amount": [9.0]}),
    )
    source = ParquetSource(f"s3://{s3_bucket}/raw/tx/", event_time="ts")
    plain = FeatureView(name="card_tx", entities=[CARD], ttl="1d", source=source, features={"amount": "float64"})
    counted = FeatureView(
        name="card_counts", entities=[CARD], ttl="1d", source=source, aggregations=[Count("amount", window="2h")]
    )
    store = OfflineStore(f"s3://{s3_bucket}/offline/", s3_endpoint_url=s3_env)

    pushed = store.append_pushed(plain, pa.table({"card_id": [3], "ts": stamps([0]), "amount": [1.0]}))
    assert pushed.startswith(f"s3://{s3_bucket}/offline/card_tx/pushed/")
    written = store.write_computed(counted, compute_view(counted, s3_endpoint_url=s3_env))
    assert written == f"s3://{s3_bucket}/offline/card_counts/{counted.version}/data.parquet"

    entity = pa.table({"card_id": [1, 2, 3, 4], "event_timestamp": stamps([1.5, 3, 1, 1])})
    out = point_in_time_join(entity, [(plain, ["amount"]), (counted, ["amount_count_2h"])], store=store)
    assert out.column("amount").to_pylist() == [7.0, 9.0, 1.0, None]
    assert out.column("amount_count_2h").to_pylist() == [2, 1, None, None]

    settings = Settings.model_construct(s3_endpoint_url=s3_env)
    lineage = store.lineage(plain)
    assert lineage.fingerprint == Source.parse(source.path).fingerprint(settings=settings)
    assert lineage.pushed_fingerprint == Source.parse(store.pushed_uri(plain)).fingerprint(settings=settings)
    assert store.lineage(counted).data == written

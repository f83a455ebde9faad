"""The JSON rows' encoder (``store._json_encoder``): what each column type does to a value before
binding it, done in Python since the JSON bypasses the types. Held to the plain definition, every
converted column's step applied to its value, on the feed table's columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy.types import DateTime, LargeBinary

from feedwatch import store
from feedwatch.db import json_bytes
from feedwatch.models import Feed

TABLE = store._table(Feed)
NAMES = [c.name for c in TABLE.c if c.name != "id"]
ENCODE = store._json_encoder(TABLE, NAMES)
DATETIMES = [c.name for c in TABLE.c if isinstance(getattr(c.type, "impl", c.type), DateTime)]
BINARY = [c.name for c in TABLE.c if isinstance(c.type, LargeBinary)]


def _oracle(row: dict[str, Any]) -> dict[str, Any]:
    """Every datetime column's value through ``UTCDateTime``'s bind, every binary one as hex."""
    out = dict(row)
    for name in DATETIMES:
        if name in row:
            out[name] = TABLE.c[name].type.process_bind_param(row[name], store._PG)
    for name in BINARY:
        if name in row:
            out[name] = None if row[name] is None else "\\x" + row[name].hex()
    return out


ZONES = [UTC, ZoneInfo("UTC"), ZoneInfo("Etc/UTC"), timezone(timedelta(hours=4)), ZoneInfo("Asia/Baku"), None]
instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1))
datetime_values = st.one_of(
    st.none(),
    st.builds(lambda at, zone: at.replace(tzinfo=zone), instants, st.sampled_from(ZONES)),
)
rows = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(DATETIMES, datetime_values),
        **dict.fromkeys(BINARY, st.none() | st.binary(max_size=40)),
        "poll_history": st.just([{"at": "2026-12-04T06:00:00+00:00", "outcome": "not_modified"}]),
        "conditional_polls": st.integers(0, 10),
    },
)


def test_the_feed_tables_converted_columns_are_its_datetimes_and_binaries() -> None:
    assert set(DATETIMES) >= {"next_check_at", "last_polled_at", "updated_at"}
    assert set(BINARY) == {"entry_fingerprints", "item_spans"}


@given(rows)
@example({"next_check_at": datetime(2026, 12, 4, 9, 0, tzinfo=timezone(timedelta(hours=4)))})
@example({"next_check_at": datetime(2026, 12, 4, 5, 0, tzinfo=ZoneInfo("UTC")), "last_ok_at": None})
@example({"updated_at": datetime(2026, 12, 4, 5, 0, tzinfo=UTC), "item_spans": b"\x00\xff"})
def test_a_row_encodes_as_every_step_applied(row: dict[str, Any]) -> None:
    try:
        expected = _oracle(row)
    except ValueError:
        with pytest.raises(ValueError, match="timezone information"):
            ENCODE(row)
        return
    encoded = ENCODE(row)
    # What PostgreSQL is sent: datetimes compare equal across zones, their JSON does not
    # (a +04:00 value passed as it is would still equal its UTC form).
    assert json_bytes(encoded) == json_bytes(expected)
    assert encoded == expected
    for name in DATETIMES:
        if encoded.get(name) is not None:
            assert encoded[name].tzinfo is UTC  # as UTCDateTime gives it


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone information"):
        ENCODE({"next_check_at": datetime(2026, 12, 4, 9, 0)})


def test_a_table_without_converted_columns_passes_its_rows_as_they_are() -> None:
    encode = store._json_encoder(TABLE, ["url", "conditional_polls"])
    row = {"url": "http://127.0.0.1/feed.xml", "conditional_polls": 3}
    assert encode(row) is row

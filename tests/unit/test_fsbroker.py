"""The embedded (filesystem) broker never shows a consumer a half-written message."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection

from workers import fsbroker


def _connection(folder: Path) -> Connection:
    return Connection(  # type: ignore[no-untyped-call]
        "filesystem://localhost/",
        transport=fsbroker.Transport,
        transport_options={"data_folder_in": str(folder), "data_folder_out": str(folder),
                           "control_folder": str(folder / "control"), "store_processed": False},
    )  # fmt: skip


def test_a_message_appears_under_its_queue_name_only_once_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        # At the moment of the rename the message is whole, and nothing a consumer would pick
        # (``<ms>_<uuid>.<queue>.msg``) has been visible before it.
        assert json.loads(Path(src).read_text())["body"]
        assert not [n for n in os.listdir(tmp_path) if n.endswith(".feeds.msg")]
        seen.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("feeds")
        queue.put({"ids": [1, 2, 3]})
        message = queue.get(timeout=1)
        assert message.payload == {"ids": [1, 2, 3]}
        message.ack()
        queue.close()
    assert len(seen) == 1 and seen[0].endswith(".feeds.msg")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".part")]


def _publish(folder: str, count: int) -> None:
    with _connection(Path(folder)) as conn:
        queue = conn.SimpleQueue("feeds")
        for i in range(count):
            queue.put({"i": i, "pad": "x" * 2_000})
        queue.close()


@pytest.mark.timeout(120)
def test_a_consumer_racing_a_publisher_gets_every_message_whole(tmp_path: Path) -> None:
    """kombu's own transport lost messages and crashed consumers here (empty reads)."""
    count = 1_500
    publisher = multiprocessing.get_context("spawn").Process(target=_publish, args=(str(tmp_path), count))
    publisher.start()
    got: set[int] = set()
    try:
        with _connection(tmp_path) as conn:
            queue = conn.SimpleQueue("feeds")
            while len(got) < count:
                message = queue.get(timeout=30)
                got.add(message.payload["i"])
                assert message.payload["pad"] == "x" * 2_000
                message.ack()
            queue.close()
    finally:
        publisher.join(30)
        if publisher.is_alive():
            publisher.kill()
    assert got == set(range(count))

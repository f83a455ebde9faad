"""The worker parent loads the language model before forking, only when it consumes feeds/articles;
every worker sets the collector's thresholds its pool children inherit."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from feedwatch import normalize, pipeline
from workers import app


def _sender(*queues: str) -> SimpleNamespace:
    return SimpleNamespace(
        app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from=queues)))
    )


@pytest.fixture(autouse=True)
def cold_model() -> Iterator[None]:
    normalize._identifier.cache_clear()
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.parametrize(
    ("queues", "loaded"),
    [
        (("feeds",), True),
        (("alerts", "default", "articles"), True),
        (("alerts", "default"), False),
        ((), True),
    ],
)
def test_warm_up_by_queue(queues: tuple[str, ...], loaded: bool) -> None:
    gc.set_threshold(700, 10, 10)
    app._warm_up(sender=_sender(*queues))
    assert (normalize._identifier.cache_info().currsize == 1) is loaded
    assert gc.get_threshold() == pipeline.GC_THRESHOLDS

"""``benchmarks/farm.py`` renders its feeds' constant bodies before it says READY: a capacity
window must not pay for a body the bare loop never asked for (round 51)."""

from __future__ import annotations

from support.bench import bench_module

farm = bench_module("farm")


def test_every_constant_feed_is_rendered_before_the_first_request() -> None:
    group = farm.Group("poll", 40, {"304": 0.5, "unchanged": 0.2, "slow": 0.1, "new": 0.1, "error": 0.1})
    f = farm.Farm([group])
    f.port = 8080
    f.render_constant_bodies()
    constant = {i for i, kind in enumerate(group.kinds) if kind in farm.CONSTANT_KINDS}
    assert constant and set(group.bodies) == constant
    # The bytes a request gets, and the bytes the runner hashes when it seeds a feed's row.
    assert all(group.bodies[i] == farm.constant_body(group, i, 8080) for i in constant)

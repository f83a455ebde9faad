"""The benchmark runs end to end on tiny sizes and prints one JSON object of the documented shape.

Shape only: tests never assert timings (the figures are the benchmark's job, docs/performance.md).
``run.py`` starts the real service (Celery workers + beat on Redis db 7 and a fresh PostgreSQL
database, then the embedded SQLite + filesystem-broker service), so it needs both servers and
runs in the queue of the tests that start services (tests/conftest.py). With ``--scale-out`` on
the poll feeds (``--scale-feeds 0``): the scale-out keys, and its duplicate counts, which are
invariants, not timings. With ``--archive``: a deployment's stored articles first
(``archive.py``), which the counts of stored against offered leave out. With ``--real``: the
ingest of the shared corpus's real feeds (``ingest_real``), skipped without ../shared.
``article_bytes.py`` is here too: it reads the server's WAL position, which other tests' writes
would move. The other scripts' tests are in ``test_benchmark_scripts.py``.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

import pytest
from support.bench import bench_json, bench_module
from support.services import SHARED, missing, port_open, require_postgres

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(300)]

TINY = ["--feeds", "60", "--ingest-feeds", "6", "--probes", "4", "--sqlite-feeds", "30", "--rate", "60",
        "--window", "2", "--hosts", "3", "--scale-out", "--scale-feeds", "0", "--real",
        "--windows", "2", "--baseline-window", "0.5", "--archive", "2000", "--prewarm"]  # fmt: skip


def check_windows(figures: dict[str, Any], rate: str, key: str, spread: str) -> None:
    """A phase's ``windows`` (``--windows 2``) as ``run.by_window`` documents them."""
    windows = figures["windows"]["each"]
    assert len(windows) == 2
    assert windows[0][f"{key}_after"] == windows[1][f"{key}_before"]
    assert windows[0][rate] == figures[rate] and windows[0][key] == figures[key]
    # The server's figures too are the first window's: each window carries its own reading.
    assert windows[0]["wal"] == figures["wal"] and windows[0]["pool"] == figures["pool"], windows[0]
    for window in windows:
        assert window[rate] > 0, window
        assert window["wal"]["bytes_each"] > 0, window  # each window's WAL, not only the first's
        assert window["pool"]["allocated_each"] >= 0, window  # and its buffer pool's traffic
        assert window["ratio"] == round(window[rate] / window[key], 3)
        assert window["steady"] is (window[spread] <= 0.10)
    steady = [w["ratio"] for w in windows if w["steady"]]
    assert figures["windows"]["steady"] == len(steady)
    # the median of one or two values is their mean
    assert figures["windows"]["ratio_median"] == round(sum(w["ratio"] for w in windows) / 2, 3)
    median = round(sum(steady) / len(steady), 3) if steady else None
    assert figures["windows"]["steady_ratio_median"] == median


def check_verdict(result: dict[str, Any], poll: dict[str, Any], ingest: dict[str, Any]) -> None:
    """``targets`` over several windows: each ratio by the median of the steady windows (of
    every window when none held still), an ingest window by the lower of its two ratios; each
    rate by its slowest window. The other targets are the first window's verdict's."""
    for name, figures, target, all_in in (
        ("poll_ratio>=0.3", poll, 0.3, False),
        ("ingest_ratio>=0.8", ingest, 0.8, True),
    ):
        windows = figures["windows"]["each"]
        judged = [w for w in windows if w["steady"]] or windows
        values = [min(w["ratio"], w["ratio_all_in"]) if all_in else w["ratio"] for w in judged]
        verdict = result["targets_over_windows"][name]
        assert verdict["windows"] == len(values) and verdict["median"] == round(statistics.median(values), 3)
        assert verdict["met_windows"] == sum(v >= target for v in values)
        assert verdict["basis"] == (
            "steady windows" if any(w["steady"] for w in windows) else "every window (none steady)"
        )
        assert result["targets"][name] is (verdict["median"] >= target)
    slowest = min(w["feeds_per_s"] for w in poll["windows"]["each"])
    assert result["targets"]["poll_feeds_per_s>=1000"] is (slowest >= 1000)
    slowest = min(w["items_per_s"] for w in ingest["windows"]["each"])
    assert result["targets"]["ingest_items_per_s>=2000"] is (slowest >= 2000)
    first, over = result["targets_first_window"], result["targets"]
    assert set(first) == set(over)
    for name in (
        set(first)
        - set(result["targets_over_windows"])
        - {"poll_feeds_per_s>=1000", "ingest_items_per_s>=2000"}
    ):
        assert over[name] is first[name], name


def test_quick_json_shape() -> None:
    if not port_open("127.0.0.1", 6379):
        missing("Redis not reachable at 127.0.0.1:6379")
    require_postgres()
    result = bench_json("run.py", "--quick", "--json", *TINY, timeout=280)
    for key in ("feeds_per_s", "floor_feeds_per_s", "ratio", "all_feeds_polled", "claimed_backlog_at_end"):
        assert key in result["poll"], key
    ingest_keys = ("parse_only_items_per_s", "ratio", "parse_only_defaults_items_per_s", "ratio_to_defaults")
    for key in ("items_per_s", *ingest_keys):
        assert key in result["ingest"], key
    # Each throughput baseline is measured right before its phase and right after it, beside the
    # idle service; the ratio divides by their mean, and the spread says whether the machine held
    # still in between.
    baselines = (("poll", "floor", "floor_feeds_per_s"), ("ingest", "parse_only", "parse_only_items_per_s"))
    for part, name, key in baselines:
        figures = result[part]
        before, after = figures[f"{key}_before"], figures[f"{key}_after"]
        assert before > 0 and after > 0, figures
        assert figures[key] == round((before + after) / 2, 1)
        assert abs(figures[f"{name}_spread"] - abs(after - before) / figures[key]) <= 0.001
        assert len(figures["service_cores"]) == 2 and min(figures["service_cores"]) >= 0
    poll, ingest = result["poll"], result["ingest"]
    assert poll["ratio"] == round(poll["feeds_per_s"] / poll["floor_feeds_per_s"], 3)
    # The window's answers by status are its own polls' (not the bare loop's before it).
    assert sum(poll["statuses"].values()) == poll["polls"] > 0, poll["statuses"]
    assert set(poll["statuses"]) <= {"200", "304"}, poll["statuses"]  # the steady mix: no errors
    # --windows 2: two capacity windows and two ingest windows, each between its own two
    # measurements of its baseline, the middle one shared; the first window is the one the
    # phase's top-level figures are of.
    for figures, rate, key, spread in (
        (poll, "feeds_per_s", "floor_feeds_per_s", "floor_spread"),
        (ingest, "items_per_s", "parse_only_items_per_s", "parse_only_spread"),
    ):
        check_windows(figures, rate, key, spread)
    for window in ingest["windows"]["each"]:  # the work it left charged to it: never a higher rate
        assert 0 < window["items_per_s_all_in"] <= window["items_per_s"], window
        all_in = window["items_per_s_all_in"] / window["parse_only_items_per_s"]
        assert window["ratio_all_in"] == round(all_in, 3)
    # The farm's CPU a request under the bare loop and under the service: both were measured.
    assert poll["farm_us_per_request"]["floor"] > 0 and poll["farm_us_per_request"]["service"] > 0
    assert ingest["ratio"] == round(ingest["items_per_s"] / ingest["parse_only_items_per_s"], 3)
    # A poll's and an item's cost to the machine by role, against what the ratio target leaves:
    # the machine's time a unit is at most the allowance exactly when the ratio is met.
    for figures, key, rate, base, target in (
        (poll, "machine_us_a_poll", "feeds_per_s", "floor_feeds_per_s", 0.3),
        (ingest, "machine_us_an_item", "items_per_s", "parse_only_items_per_s", 0.8),
    ):
        cost = figures[key]
        assert cost["spent"] == round(result["cores"] / figures[rate] * 1e6, 1)
        assert sum(cost["by_role"].values()) + cost["idle"] <= cost["spent"] * 1.05, cost
        assert cost["by_role"]["feeds"] > 0, cost
        # The allowance is the spend at exactly the target ratio: spent / allowed = target / ratio.
        share = cost["spent"] / cost["allowed"]  # the ratio unrounded: a tiny run's is ~0.01
        assert abs(share * figures[rate] / figures[base] / target - 1) < 0.01, (cost, figures["ratio"])
    # The work the window left (alerts to deliver, full texts to read), drained after it, and
    # the rate with the window's share of it charged: never above the window's own rate
    # (ingest_real is skipped without ../shared).
    for figures in [f for f in (ingest, result["ingest_real"]) if "items" in f]:
        assert set(figures["left_at_window_end"]) == {"full_texts", "alerts"}
        assert figures["drain"]["s"] >= 0 and figures["deferred_cpu_s"] >= 0
        assert 0 < figures["items_per_s_all_in"] <= figures["items_per_s"]
        assert figures["ratio_all_in"] == round(
            figures["items_per_s_all_in"] / figures["parse_only_items_per_s"], 3
        )
    # The first window's verdict, as a run of one window gives it; with --windows 2, beside the
    # verdict over both windows.
    met = min(ingest["ratio"], ingest["ratio_all_in"]) >= 0.8
    assert result["targets_first_window"]["ingest_ratio>=0.8"] is met
    check_verdict(result, poll, ingest)
    steady = max(poll["floor_spread"], ingest["parse_only_spread"]) <= 0.10
    assert result["baselines_steady"] is steady
    assert result["stolen_cores"] >= 0  # the hypervisor's share over the run (0 on bare metal)
    machine = result["machine"]  # which machine of the kind
    assert machine["cpu"] and machine["cpu"] in Path("/proc/cpuinfo").read_text()
    assert machine["last_level_cache"] is None or machine["last_level_cache"].startswith("L")
    for figures in (poll, ingest):  # the server's WAL over the window, a poll or an item, and its checkpoints
        wal = figures["wal"]
        assert wal["bytes_each"] > 0 and wal["checkpoints_timed"] >= 0 and wal["checkpoints_requested"] >= 0
    for figures in (poll, ingest):  # the buffer pool's pages brought in and written out, a poll or an item
        pool = figures["pool"]
        assert pool["allocated_each"] >= 0, pool
        assert set(pool["written_each"]) == {"by_backends", "by_bgwriter", "by_checkpoints"}
        assert all(v >= 0 for v in pool["written_each"].values()), pool
    assert ingest["pool"]["allocated_each"] > 0, ingest["pool"]  # its new articles took new pages
    # The window's two article counts, each right after its commit, outside the window's CPU.
    assert set(ingest["count_s"]) == {"start", "end"} and min(ingest["count_s"].values()) >= 0
    for figures in (poll, ingest):  # PostgreSQL's share by its processes: its backends ran statements
        assert figures["postgres_cores_by_kind"]["backends"] > 0, figures["postgres_cores_by_kind"]
    # The feeds worker's share while polling, its pool's children (the polls) and its main process.
    assert poll["feeds_cores_by_process"]["children"] > 0, poll["feeds_cores_by_process"]
    assert set(poll["feeds_cores_by_process"]) == {"main", "children"}
    for figures in (poll, ingest):  # the cores no process wanted over the window: two at most
        assert 0 <= figures["idle_cores"] <= 2, figures
    for figures in (poll, ingest):  # the machine switches tasks; the feeds worker is displaced
        switches = figures["context_switches"]
        assert switches["machine_per_s"] > 0 and switches["involuntary_per_s"]["feeds"] >= 0
    assert isinstance(result["unchanged_cost_ratio"], float)
    assert result["unchanged"]["parse_skipped"] is True  # a re-poll of the same bytes never parses
    real = result["ingest_real"]
    if (SHARED / "corpus" / "feeds").is_dir():  # the real feeds, every item new on every hit
        assert real["items"] > 0 and real["feeds"] == 6 and real["files"] >= 26, real
        assert real["ratio"] == round(real["items_per_s"] / real["parse_only_items_per_s"], 3)
    else:
        assert "skipped" in real
    latency = result["latency"]
    for key in ("p50_s", "p95_s", "probes", "delivered", "p50_ratio_to_unloaded", "p95_ratio_to_unloaded"):
        assert key in latency, key
    for key in ("p50_s", "p95_s", "probes", "delivered"):
        assert key in latency["unloaded"], key  # the same probes with the poll feeds parked
    # A probe's wait cut at its article's fetched_at and its alert's queued_at: each stage is
    # part of the whole, and the slowest probe's stages add up to its wait.
    # (The last two are None for an alert delivered before its publisher recorded queued_at.)
    for stage in ("due_to_fetched", "fetched_to_queued", "queued_to_delivered"):
        longest = latency["stages"][stage]["max_s"]
        assert longest is None or longest <= latency["max_s"] + 0.001, (stage, latency)
    assert latency["stages"]["due_to_fetched"]["max_s"] is not None, latency
    slowest = latency["slowest"][0]
    assert slowest["total"] == latency["max_s"], latency
    if slowest["fetched_to_queued"] is not None:
        parts = slowest["due_to_fetched"] + slowest["fetched_to_queued"] + slowest["queued_to_delivered"]
        assert abs(parts - slowest["total"]) <= 0.003, slowest
    memory = result["memory"]
    assert memory["peak_rss_mb_max"] > 0
    assert memory["idle"]["peak_rss_mb_max"] > 0  # the same workers before any work
    for key in ("feeds_main", "feeds_child", "alerts_worker_main"):
        assert {"rss_mb", "pss_mb", "rss_ratio_to_idle", "pss_ratio_to_idle"} <= set(
            memory["by_process"][key]
        )
        # PSS is sampled (at most every PSS_EVERY_S), RSS read on every sample: both were read.
        assert memory["by_process"][key]["pss_mb"] > 0 and memory["by_process"][key]["rss_mb"] > 0
    assert memory["largest_process"] in memory["by_process"]
    assert "ratio_to_idle" in memory and "pss_ratio_to_idle" in memory
    scale = result["scale_out"]
    for phase, nodes in (
        ("service_worker", {"feeds"}),
        ("one_node", {"node-a"}),
        ("two_nodes", {"node-a", "node-b"}),
    ):
        assert "feeds_per_s" in scale[phase] and set(scale[phase]["by_node"]) == nodes, phase
    assert "ratio" in scale and "ratio_to_service_worker" in scale
    correct = scale["correctness"]
    assert correct["feeds"] == 60 and set(correct["polls_by_node"]) == {"node-a", "node-b"}
    assert {"polled_once", "missed", "articles_expected", "articles_stored", "alerts"} <= set(correct)
    for key in ("polled_more_than_once", "alerts_duplicate", "deliveries_duplicate", "jsonl_duplicate_keys"):
        assert correct[key] == 0, (key, correct)
    # Every item the farm offered the service is stored once: none lost, none twice.
    assert correct["articles_stored"] == correct["articles_expected"] > 0, correct
    assert correct["feeds_articles_mismatch"] == 0, correct
    assert "feeds_per_s" in result["sqlite"]
    assert all(isinstance(v, bool) for v in result["targets"].values())
    assert result["sizes"]["feeds"] == 60
    phases = result["phases_s"]  # wall-clock seconds per step, in the order they ran
    for key in (
        "floor", "pg.memory_idle", "pg.warm_up", "pg.floor_before", "pg.capacity", "pg.floor_after",
        "pg.parse_only_before", "pg.ingest", "pg.parse_only_after", "pg.scale_out", "sqlite.capacity",
    ):  # fmt: skip
        assert key in phases, key
    assert all(isinstance(v, float) for v in phases.values())
    # --archive 2000: the article table held a deployment's archive before the phases (a flagged
    # article in fifty, each with its match and alert), and the stored-against-offered
    # counts above are the run's own.
    assert list(phases).index("pg.archive") < list(phases).index("pg.memory_idle")
    archive = result["archive"]
    assert {k: archive[k] for k in ("articles", "matches", "alerts")} == {
        "articles": 2000,
        "matches": 40,
        "alerts": 40,
    }
    assert archive["article_mb"]["heap"] > 0 and archive["load_s"] >= 0
    # --prewarm: the identity index read into the buffer pool, every block of it.
    warm = archive["prewarmed"]
    assert warm["index"] in archive["article_mb"]["indexes"]
    assert warm["blocks"] == warm["index_blocks"] > 0
    assert warm["shared_buffers_mb"] > 0
    assert result["sizes"]["hosts"] == 3  # feeds on 127.0.0.1 … .3: the warm-up waited for all


def test_article_bytes_json_shape() -> None:
    """``benchmarks/article_bytes.py`` on two farm feeds: the teaser stored once takes fewer
    bytes of the table, the WAL and the rows sent than the same drafts storing it twice."""
    require_postgres()
    farm = bench_json("article_bytes.py", "--farm-feeds", "2", timeout=200)["farm"]
    assert farm["drafts"] == farm["once"]["articles"] == farm["twice"]["articles"] == 100
    assert farm["summary_empty"] == 1.0  # the farm's items have a description only
    for key in ("table_bytes", "wal_bytes", "sent_bytes"):
        assert 0 < farm[f"{key}_ratio"] < 1, key


def test_soak_json_shape() -> None:
    """``benchmarks/soak.py`` for three steps of 10 s, the upkeep every 3 s: a record a step, every
    probe delivered (nothing lost on the way), each upkeep the worker logged in the step it ran,
    ``drift`` as its docstring defines it, and py-spy's window of the second step and of the
    third (``--spy-steps 1``), its functions' CPU a poll from samples of the feeds worker's tasks."""
    if not port_open("127.0.0.1", 6379):
        missing("Redis not reachable at 127.0.0.1:6379")
    require_postgres()
    soak = bench_module("soak")
    args = ("--minutes", "0.5", "--step", "10", "--feeds", "200", "--rate", "50", "--probes", "3")
    result = bench_json("soak.py", *args, "--upkeep-seconds", "3", "--spy-steps", "1", timeout=200)
    steps = result["steps"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert result["upkeep_seconds"] == 3
    for step in steps:
        assert step["polls_per_s"] > 0 and step["claim"]["buffers"] > 0, step
        assert step["latency"]["probes"] == step["latency"]["delivered"] == 3, step
        costs = step["us_a_poll"]
        assert set(costs) == {"feeds", "postgres", "farm", "feeds_over_farm", "feeds_kernel", "feeds_main"}
        assert 0 <= costs["feeds_kernel"] <= costs["feeds"] and 0 <= costs["feeds_main"] <= costs["feeds"], (
            step
        )
        for role in ("feeds", "postgres", "farm"):  # from the CPU read, not from the rounded cores
            if role in step["cores"]:
                assert abs(costs[role] - step["cores"][role] * 1e6 / step["polls_per_s"]) <= (
                    0.006e6 / step["polls_per_s"]
                ), (role, step)
        # The ratio of the unrounded costs: near the ratio of the rounded ones.
        assert abs(costs["feeds_over_farm"] - costs["feeds"] / costs["farm"]) < 0.01, step
    for step in steps:  # the tick twice a second, run by one of the two workers that consume default
        assert set(step["ticks"]) == {"feeds", "alerts_worker"} and sum(step["ticks"].values()) > 0, step
        assert 0 <= step["flagged"]["batches"] <= step["flagged"]["items"], step
    assert sum(s["flagged"]["items"] for s in steps) > 0  # the probes' items at least
    runs = [u for s in steps for u in s["upkeeps"]]
    summary = result["summary"]
    assert summary["upkeep"]["runs"] == len(runs) >= 3  # the task logs, where autovacuum is on too
    assert summary["articles"] == steps[-1]["articles"] > 0
    assert set(result["drift"]) == set(soak.DRIFTING)
    for name, figure in result["drift"].items():
        path = soak.DRIFTING[name]
        first = [v for s in steps[:1] if (v := soak.pick(s, path)) is not None]
        if figure is not None:  # three steps: the first third is the first step
            assert figure["first"] == round(statistics.median(first), 3), name
            ratio = round(figure["last"] / figure["first"], 3) if figure["first"] else None
            assert figure["ratio"] == ratio, name
    spy = result["spy"]
    for window, step in (("first", steps[1]), ("last", steps[2])):
        assert spy[window]["steps"] == [step["step"]] * 2, spy[window]
        assert spy[window]["polls"] > 0 and spy[window]["gil_us_a_poll"] > 0, spy[window]
        assert "costs" not in spy[window]  # only what moved between them is printed
        assert spy[window]["raw"] == f"spy-{window}.txt", spy[window]
    moved = spy["moved"]
    assert 0 < len(moved) <= 30
    shifts = [abs(f["pct_last"] - f["pct_first"]) for f in moved.values()]
    # The largest moves first (each figure rounded to 0.01 after they were sorted).
    assert all(a >= b - 0.011 for a, b in itertools.pairwise(shifts)), shifts
    keys = {f"{k}_{w}" for k in ("pct", "self_pct", "us") for w in ("first", "last")}
    for name, figure in moved.items():
        assert set(figure) == keys, name
        for window in ("first", "last"):
            assert 0 <= figure[f"self_pct_{window}"] <= figure[f"pct_{window}"] <= 100.01, name
            # A share of the window's samples, and its µs a poll of the same samples.
            gil = spy[window]["gil_us_a_poll"]
            assert abs(figure[f"us_{window}"] - gil * figure[f"pct_{window}"] / 100) <= 0.06 + gil * 1e-3, (
                name
            )

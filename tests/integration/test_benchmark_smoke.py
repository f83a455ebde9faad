"""The benchmark runs end to end on tiny sizes and prints one JSON object of the documented shape.

Shape only: tests never assert timings (the figures are the benchmark's job, docs/performance.md).
It starts the real service (Celery workers + beat on Redis db 7 and a fresh PostgreSQL database,
then the embedded SQLite + filesystem-broker service), so it needs both servers. With
``--scale-out`` on the poll feeds (``--scale-feeds 0``): the scale-out keys, and its duplicate
counts, which are invariants, not timings. With ``--real``: the ingest of the shared corpus's
real feeds (``ingest_real``), skipped without ../shared.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.services import REPO, SHARED, missing, port_open

from feedwatch import pipeline

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(300)]

TINY = ["--feeds", "60", "--ingest-feeds", "6", "--probes", "4", "--sqlite-feeds", "30", "--rate", "60",
        "--window", "2", "--hosts", "3", "--scale-out", "--scale-feeds", "0", "--real",
        "--windows", "2"]  # fmt: skip


def bench_json(script: str, *args: str, timeout: float = 200) -> Any:
    """``benchmarks/<script> *args`` run to its end; the JSON object it printed."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def check_windows(figures: dict[str, Any], rate: str, key: str, spread: str) -> None:
    """A phase's ``windows`` (``--windows 2``) as ``run.by_window`` documents them."""
    windows = figures["windows"]["each"]
    assert len(windows) == 2
    assert windows[0][f"{key}_after"] == windows[1][f"{key}_before"]
    assert windows[0][rate] == figures[rate] and windows[0][key] == figures[key]
    for window in windows:
        assert window[rate] > 0, window
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
    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL not reachable at 127.0.0.1:5432")
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
    assert result["sizes"]["hosts"] == 3  # feeds on 127.0.0.1 … .3: the warm-up waited for all


def test_real_ingest_json_shape(tmp_path: Path) -> None:
    """``benchmarks/real_ingest.py`` on four of the corpus's real feeds, one measured round:
    every item of every feed stored (the service's and feedparser's counts agree but for the
    duplicates the service keeps once), and its ratios are the ones its figures give."""
    feeds = SHARED / "corpus" / "feeds"
    names = ("azernews-swelbyboy.xml", "meduza-egfedorov.xml", "bbc-chinese-greatfire.xml", "uol-rbren.xml")
    if not all((feeds / name).is_file() for name in names):
        pytest.skip(f"{feeds} holds no corpus feeds (../shared absent)")
    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL not reachable at 127.0.0.1:5432")
    for name in names:
        (tmp_path / name).write_bytes((feeds / name).read_bytes())
    result = bench_json("real_ingest.py", "--rounds", "1", "--feeds-dir", str(tmp_path), timeout=200)
    for part in ("real", "farm"):
        figures = result[part]
        assert figures["feeds"] == len(names)
        assert 0 < figures["articles_a_round"] <= figures["feedparser_entries_a_round"]
        cost = figures["service_cpu_ms_per_item"]
        assert cost["total"] == pytest.approx(
            cost["process"] + cost["postgres"] + cost["http_server"], abs=3e-4
        )
        parse = figures["feedparser_cpu_ms_per_item"]["service_options"]
        assert figures["ratio"] == round(parse / cost["total"], 3)
    assert result["farm"]["articles_a_round"] == result["farm"]["feedparser_entries_a_round"] == 200
    assert result["real"]["fast_path_declines"] == ["uol-rbren.xml"]  # not well-formed
    assert result["farm"]["fast_path_declines"] == []


def test_batch_memory_json_shape() -> None:
    """``benchmarks/batch_memory.py`` on four small feeds with a bound of two feeds' bytes: the
    worker cuts the one batch of new feeds into parts (the fetch keeping the bodies past the
    bound in files), and the tick, knowing the sizes, sends batches of the bound; every item is
    stored in each configuration."""
    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL not reachable at 127.0.0.1:5432")
    sizes = ("--feeds", "4", "--items", "40", "--item-bytes", "2000")
    result = bench_json("batch_memory.py", *sizes, "--bound", str(4 * pipeline.UNKNOWN_BODY_BYTES))
    # The tick sends the four new feeds together (a feed never fetched counts UNKNOWN_BODY_BYTES);
    # their bodies are two a part.
    assert 2 * result["bytes_a_feed"] <= result["poll_batch_bytes"] < 3 * result["bytes_a_feed"]
    configs = ("unbounded", "parts", "tick")
    shapes = {c: (result[c]["batches"], result[c]["parts"], result[c]["articles"]) for c in configs}
    assert shapes == {"unbounded": (1, 1, 160), "parts": (1, 2, 160), "tick": (2, 2, 160)}
    # Past the bound the fetch keeps bodies in temporary files: at least two of the new feeds'
    # four; none where the batch fits the bound.
    spilled = {c: result[c]["bodies_spilled"] for c in configs}
    assert spilled["unbounded"] == spilled["tick"] == 0 and spilled["parts"] >= 2, spilled
    for config in ("parts", "tick"):
        growth = result[config]["growth_mb"] / result["unbounded"]["growth_mb"]
        assert result[f"growth_ratio_{config}_vs_unbounded"] == round(growth, 3)


def test_poll_costs_json_shape() -> None:
    """``benchmarks/poll_costs.py`` on 100 poll feeds, one round: a CPU figure for each kind of
    poll and the mix, the ingest's and the deliveries', and the tick's claim of every feed (the
    poll feeds and the ingest's 100), once a round."""
    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL not reachable at 127.0.0.1:5432")
    result = bench_json("poll_costs.py", "--feeds", "100", "--rounds", "1", timeout=180)
    assert set(result["cpu_ms_per_feed"]) == {"304", "unchanged", "new", "mix"}
    assert all(value > 0 for value in result["cpu_ms_per_feed"].values())
    assert result["ingest"]["items"] == 100 * 50
    assert set(result["delivery"]["cpu_ms_per_alert"]) == {"batch_1", "batch_3", "batch_25", "batch_100"}
    claim = result["claim"]
    assert claim["feeds"] == 200 and claim["cpu_ms_per_feed"] > 0 and claim["postgres_cpu_ms_per_feed"] >= 0


def test_level_probe_json_shape() -> None:
    """``benchmarks/level_probe.py`` for a moment: every stage timed, the ratios its figures give."""
    result = bench_json("level_probe.py", "--seconds", "0.5", timeout=120)
    stages = {"feedparser", "parse", "normalize", "language", "rules"}
    assert set(result["us_an_item"]) == set(result["per_feedparser"]) == stages and result["rounds"] >= 3
    assert result["per_feedparser"]["feedparser"] == 1.0
    assert all(value > 0 for value in result["us_an_item"].values())


def test_farm_load_json_shape() -> None:
    """``benchmarks/farm_load.py`` on a small farm: the saturated way and each paced one, the
    paced ones held to their rate (the releases wait for their turn; at most a burst and the
    requests in flight ahead of it), and each ratio the farm's CPU a request over the saturated
    way's in the same run."""
    result = bench_json(
        "farm_load.py", "--feeds", "200", "--seconds", "1", "--rates", "400", "--bursts", "1,50", timeout=120
    )
    ways = result["ways"]
    assert set(ways) == {"saturated", "400/s, burst 1", "400/s, burst 50"}
    saturated = ways["saturated"]["farm_us_per_request"]
    assert saturated > 0 and ways["saturated"]["ratio_to_saturated"] == 1.0
    for name, burst in (("400/s, burst 1", 1), ("400/s, burst 50", 50)):
        figures = ways[name]
        assert 0 < figures["req_per_s"] <= 400 + burst + result["in_flight"], figures
        assert figures["ratio_to_saturated"] == round(figures["farm_us_per_request"] / saturated, 3)


def test_header_lines_json_shape() -> None:
    """``benchmarks/header_lines.py`` for a moment: both answers timed in every round (the
    script itself refuses a round whose requests were not 304s or whose extra headers did not
    arrive), and the cost a line from the two means."""
    result = bench_json("header_lines.py", "--extra", "3", "--rounds", "1", "--batches", "2", timeout=120)
    runs = result["us_a_request"]
    assert set(runs) == {"0", "3"} and all(len(v) == 1 and v[0] > 0 for v in runs.values())
    means = result["means"]
    assert result["us_a_line"] == round((means["3"] - means["0"]) / 3, 3)


@pytest.mark.parametrize("ca", ["self", "system"])
def test_tls_cost_json_shape(ca: str) -> None:
    """``benchmarks/tls_cost.py`` for a moment: every way timed (the script itself refuses a
    way whose answers were not 304s, so each TLS way did its handshakes against the
    certificate it made), each way's mean over the plain kept connection's, and the server's
    word that each way measured what it is named for: every new connection to the one host
    resumed its session, none after the sessions were dropped, none on a kept connection
    (one handshake before the timing)."""
    if shutil.which("openssl") is None:
        pytest.skip("tls_cost.py makes its certificate with the openssl command, which is not installed")
    if ca == "system" and not os.path.isfile(ssl.get_default_verify_paths().cafile or ""):
        pytest.skip("--ca system appends to the system's CA bundle, and this machine has none")
    result = bench_json(
        "tls_cost.py", "--rounds", "1", "--batches", "6", "--hosts", "3", "--ca", ca, timeout=120
    )
    assert result["ca"] == ca
    ways = {"http_kept", "http_new", "https_kept", "https_resumed", "https_full", "https_hosts"}
    assert set(result["us_a_request"]) == set(result["means"]) == ways
    assert all(len(v) == 1 and v[0] > 0 for v in result["us_a_request"].values())
    means = result["means"]
    assert result["ratio_to_http_kept"] == {w: round(m / means["http_kept"], 2) for w, m in means.items()}
    shares = result["resumed_share"]
    assert set(shares) == {w for w in ways if w.startswith("https")}
    assert (shares["https_resumed"], shares["https_full"], shares["https_kept"]) == (1.0, 0.0, 0.0)
    assert 0 <= shares["https_hosts"] <= 1


def test_host_rounds_json_shape() -> None:
    """``benchmarks/host_rounds.py`` over half an hour of simulated time, two origins of ten
    feeds: with rounds off no poll is early and each run's ratios are its figures over the off
    run's; with rounds on, some polls go early, never by more than the share allows of an
    interval (plus its jitter), and the origins' polls open fewer connections. The simulation is
    seeded: the same figures on every machine."""
    result = bench_json(
        "host_rounds.py",
        "--hours",
        "0.3",
        "--warm-up",
        "10",
        "--shares",
        "0,0.2",
        "--mix",
        "2x10",
        "--keepalive",
        "60,600",
        timeout=120,
    )
    assert (result["feeds"], result["origins"]) == (20, 2)
    off, on = result["runs"]
    assert (off["share"], on["share"]) == (0.0, 0.2)
    assert off["early_share"] == 0 and off["connections_vs_off"] == 1.0 and off["saved_us_a_poll"] == 0
    assert on["early_share"] > 0 and 0 < on["earliness_max"] <= 0.2 * 1.1 / 0.9
    assert on["connections"] < off["connections"] and on["saved_us_a_poll"] > 0
    for run in (off, on):
        assert run["connections_a_poll"] == round(run["connections"] / run["polls"], 3)
        assert run["polls_vs_off"] == round(run["polls"] / off["polls"], 4)
        # Idle connections kept longer are reused at least as often; kept 600 s, an origin of ten
        # feeds polled every few minutes finds its connection again.
        by_keep = run["connections_a_poll_by_keepalive"]
        assert list(by_keep) == ["15", "60", "600"] and by_keep["15"] == run["connections_a_poll"]
        assert by_keep["15"] >= by_keep["60"] >= by_keep["600"] and by_keep["600"] < by_keep["15"]


def test_language_calls_json_shape() -> None:
    """``benchmarks/language_calls.py`` for two rounds: both ways timed, the ratio their figures
    give, and the same languages either way."""
    result = bench_json("language_calls.py", "--feeds", "3", "--rounds", "2", timeout=120)
    times = result["us_a_changed_feed"]
    assert set(times) == {"call_a_feed", "one_call"} and all(t > 0 for t in times.values())
    ratio = result["ratio_call_a_feed_to_one_call"]
    assert abs(ratio - times["call_a_feed"] / times["one_call"]) < 0.01 and result["same"] is True


def test_article_bytes_json_shape() -> None:
    """``benchmarks/article_bytes.py`` on two farm feeds: the teaser stored once takes fewer
    bytes of the table, the WAL and the rows sent than the same drafts storing it twice."""
    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL not reachable at 127.0.0.1:5432")
    farm = bench_json("article_bytes.py", "--farm-feeds", "2", timeout=200)["farm"]
    assert farm["drafts"] == farm["once"]["articles"] == farm["twice"]["articles"] == 100
    assert farm["summary_empty"] == 1.0  # the farm's items have a description only
    for key in ("table_bytes", "wal_bytes", "sent_bytes"):
        assert 0 < farm[f"{key}_ratio"] < 1, key


def test_seeded_feed_rows_hold_what_a_parse_stored() -> None:
    """``run.parsed_state`` seeds a 304 or unchanged feed's row as a poll that parsed its body
    left it: the fingerprints of its items, and item spans from which the next parse of the
    same body keeps every item and parses none (so the record is the service's own, not bytes
    of the right size)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import run  # type: ignore[import-not-found]
    from farm import CONTENT_TYPE, Group, constant_body  # type: ignore[import-not-found]

    from feedwatch import known, pipeline
    from feedwatch.parse import parse_feed

    group = Group(name="poll", feeds=12, mix={"304": 0.5, "unchanged": 0.5}, items=50, new_items=2)
    indexes = [1, 4, 7]
    port = 8123
    for index, (digest, prints, spans) in zip(indexes, run.parsed_state(group, indexes, port), strict=True):
        # The hash the service takes of the body the farm serves: the unconditional poll finds it.
        assert digest == pipeline.body_hash(constant_body(group, index, port))
        assert len(prints) == 50 * known.SIZE and spans
        url = run.farm_url(port, group.name, index, group.hosts)
        again = parse_feed(
            constant_body(group, index, port),
            headers={"content-type": CONTENT_TYPE},
            url=url,
            known=known.predicate(prints),
            spans=spans,
        )
        assert (len(again.kept), len(again.entries)) == (50, 0)
        assert known.fingerprints(again) == prints

"""The other scripts of ``benchmarks/`` run on small sizes and print JSON of the documented shape.

Shape only, as ``test_benchmark_smoke.py``: tests never assert timings. These scripts start no
Celery worker and use no fixed Redis database: each runs in its own process, starts its own
loopback servers (a farm, a TLS server) and stops them by pid, and takes a scratch PostgreSQL
database of its own where it needs one. So they run beside the tests that start services
(tests/conftest.py), not in their queue. ``article_bytes.py`` stays in that module: it reads the
server's WAL position, which the other tests' writes would move.
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
from pathlib import Path

import pytest
from support.bench import bench_json
from support.services import REPO, SHARED, require_postgres

from feedwatch import pipeline

pytestmark = [pytest.mark.integration]


def test_real_ingest_json_shape(tmp_path: Path) -> None:
    """``benchmarks/real_ingest.py`` on four of the corpus's real feeds, one measured round:
    every item of every feed stored (the service's and feedparser's counts agree but for the
    duplicates the service keeps once), and its ratios are the ones its figures give."""
    feeds = SHARED / "corpus" / "feeds"
    names = ("azernews-swelbyboy.xml", "meduza-egfedorov.xml", "bbc-chinese-greatfire.xml", "uol-rbren.xml")
    if not all((feeds / name).is_file() for name in names):
        pytest.skip(f"{feeds} holds no corpus feeds (../shared absent)")
    require_postgres()
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
    require_postgres()
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
    require_postgres()
    result = bench_json("poll_costs.py", "--feeds", "100", "--rounds", "1", timeout=180)
    assert set(result["cpu_ms_per_feed"]) == {"304", "unchanged", "new", "mix"}
    assert all(value > 0 for value in result["cpu_ms_per_feed"].values())
    assert result["ingest"]["items"] == 100 * 50
    assert set(result["delivery"]["cpu_ms_per_alert"]) == {"batch_1", "batch_3", "batch_25", "batch_100"}
    claim = result["claim"]
    assert claim["feeds"] == 200 and claim["cpu_ms_per_feed"] > 0 and claim["postgres_cpu_ms_per_feed"] >= 0


def test_state_forms_json_shape() -> None:
    """``benchmarks/state_forms.py`` on 300 feeds, two rounds of each form: every form's figures,
    each of the forms that store a history reads it back as written, and the service's form is
    ``store.update_feeds`` itself."""
    require_postgres()
    result = bench_json(
        "state_forms.py",
        "--feeds",
        "300",
        "--batch",
        "50",
        "--rounds",
        "2",
        "--vacuum-every",
        "3",
        timeout=180,
    )
    forms = ("nested", "string", "apart_text", "apart", "none")
    assert tuple(result["forms"]) == forms
    assert result["histories_read_back_as_written"] == {"string": True, "apart_text": True, "apart": True}
    for figures in result["forms"].values():
        assert figures["rows"] == 100 and figures["postgres_us_a_row"] >= 0 and figures["wall_us_a_row"] > 0
    assert all(f"{form}_vs_nested" in result for form in forms[1:])


def test_claim_forms_json_shape() -> None:
    """``benchmarks/claim_forms.py`` on 300 feeds, 20 made due before each claim, three claims of
    each form: each claims at least those (the seed leaves every feed due within ten seconds, so
    a quick run claims some more), and the plans PostgreSQL chose are counted."""
    require_postgres()
    result = bench_json(
        "claim_forms.py", "--feeds", "300", "--due", "20", "--claims", "3", "--vacuum-every", "4", timeout=180
    )
    for figures in result["forms"].values():
        assert figures["claims"] == 3 and figures["claimed_feeds"] >= 60
    assert set(result["prepared_plans"]) <= {"in", "array", "array_index"}


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


def test_batch_messages_json_shape() -> None:
    """``benchmarks/batch_messages.py`` counts the poll messages of a tick of 2,000 due feeds:
    the farm's sized feeds fit the default byte bound in batches of 200 (the same cut either
    way); its first window's feeds, seven in ten unsized, went in 20 messages and go in 14; the
    corpus's sizes, where the shared corpus is present, never in more messages than before."""
    result = bench_json("batch_messages.py", "--feeds", "2000", "--bytes", str(6 << 20), timeout=120)
    assert (result["feeds"], result["poll_batch_size"]) == (2000, 200)
    mixes = result["mixes"]
    default, six = mixes["farm"]["by_bound"]
    assert (default["batch_bytes"], six["batch_bytes"]) == (8 << 20, 6 << 20)
    assert default["messages"] == {"count_then_bytes": 10, "poll_batches": 10} and default["ratio"] == 1.0
    assert six["messages"]["count_then_bytes"] == 20 and six["messages"]["poll_batches"] < 20
    first = mixes["farm_first_window"]["by_bound"][0]
    assert first["messages"] == {"count_then_bytes": 20, "poll_batches": 14} and first["ratio"] == 0.7
    assert first["feeds_a_message"] == {"count_then_bytes": 100.0, "poll_batches": 142.9}
    if not (SHARED / "corpus" / "feeds").is_dir():
        assert "skipped" in mixes["corpus"]
    else:
        for bound in mixes["corpus"]["by_bound"]:
            assert bound["messages"]["poll_batches"] <= bound["messages"]["count_then_bytes"]


def test_language_calls_json_shape() -> None:
    """``benchmarks/language_calls.py`` for two rounds: both ways timed, the ratio their figures
    give, and the same languages either way."""
    result = bench_json("language_calls.py", "--feeds", "3", "--rounds", "2", timeout=120)
    times = result["us_a_changed_feed"]
    assert set(times) == {"call_a_feed", "one_call"} and all(t > 0 for t in times.values())
    ratio = result["ratio_call_a_feed_to_one_call"]
    assert abs(ratio - times["call_a_feed"] / times["one_call"]) < 0.01 and result["same"] is True


def test_seeded_feed_rows_hold_what_a_parse_stored() -> None:
    """``run.parsed_state`` seeds a 304 or unchanged feed's row as a poll that parsed its body
    left it: the fingerprints of its items, item spans from which the next parse of the same
    body keeps every item and parses none (so the record is the service's own, not bytes of the
    right size), and the body's size."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import run  # type: ignore[import-not-found]
    from farm import CONTENT_TYPE, Group, constant_body  # type: ignore[import-not-found]

    from feedwatch import known, pipeline
    from feedwatch.parse import parse_feed

    group = Group(name="poll", feeds=12, mix={"304": 0.5, "unchanged": 0.5}, items=50, new_items=2)
    indexes = [1, 4, 7]
    port = 8123
    states = run.parsed_state(group, indexes, port)
    for index, (digest, prints, spans, size) in zip(indexes, states, strict=True):
        # The hash the service takes of the body the farm serves: the unconditional poll finds it.
        assert digest == pipeline.body_hash(constant_body(group, index, port))
        # The size the tick cuts its messages by, as a poll of that body records it.
        assert size == len(constant_body(group, index, port)) > 40_000
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


def test_article_scale_json_shape() -> None:
    """``benchmarks/article_scale.py`` on a large database grown to 3,000 and then 6,000
    articles, four feeds, two rounds of each database at each size: the load holds what it was
    asked for (a flagged article in fifty, each with its match and alert), every round stored
    every feed's 50 new items, and each ratio is the large database's median over the small
    one's."""
    require_postgres()
    result = bench_json(
        "article_scale.py", "--sizes", "3000,6000", "--rounds", "2", "--feeds", "4", timeout=240
    )
    assert [step["articles"] for step in result["steps"]] == [3000, 6000]
    for step in result["steps"]:
        flagged = step["articles"] // 50
        assert step["loaded"] == {"articles": step["articles"], "matches": flagged, "alerts": flagged}
        assert step["large_mb"]["heap"] > 0 and len(step["large_mb"]["indexes"]) >= 4
        for name in ("small", "large"):
            figures = step[name]
            assert figures["articles"] == 2 * 4 * 50 and len(figures["each"]) == 2
            assert figures["cpu_ms"] > 0 and figures["wal_bytes"] > 0
            assert set(figures["status_ms"]) == {
                "beat",
                "feeds",
                "alerts",
                "articles",
                "full_text",
                "matches",
                "total",
            }
        ratios = step["large_over_small"]
        for key in ("cpu_ms", "wall_ms", "wal_bytes"):
            assert ratios[key] == round(step["large"][key] / step["small"][key], 3)

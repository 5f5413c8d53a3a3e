"""`cortexctl bench` cannot rot: each scenario runs briefly, hub and bare server side by side.

Tiny sizes, a few seconds each; only the report's structure and sanity are checked, never
a timing.
"""

from __future__ import annotations

import pytest

from tests.helpers import cli_json, run_cli

TINY = [
    "--joins", "6", "--in-flight", "4", "--steps", "4,8", "--duration", "1s",
    "--interval", "0.25s", "--storm", "8", "--tasks", "6", "--task-rate", "20",
    "--files", "6", "--file-kib", "4", "--upload-parallel", "1,3", "--big-mib", "2",
    "--workers", "2",
]  # fmt: skip

EXPECTED_CASES = {"joins": 1, "rejoins": 1, "streams": 2, "storm": 1, "dispatch": 1, "upload": 3}


@pytest.mark.parametrize("scenario", sorted(EXPECTED_CASES))
def test_each_scenario_runs_against_the_hub_and_the_bare_server(scenario: str) -> None:
    report = cli_json("bench", scenario, "--baseline", *TINY)
    assert report["machine"]["cpus"] >= 1
    cases = report["scenarios"][scenario]
    assert len(cases) == EXPECTED_CASES[scenario]
    for case in cases:
        hub, bare = case["hub"], case["bare"]
        if scenario == "dispatch":
            assert bare is None  # a bare server has no store to dispatch from
            assert hub["tasks"] == 6 and hub["done"] == 6
            assert 0 < hub["start_p50_ms"] <= hub["result_p99_ms"]
            continue
        assert bare is not None and set(hub) == set(bare)
        for figures in (hub, bare):
            if scenario in ("joins", "rejoins"):
                assert figures["count"] == 6 and figures["errors"] == {}
                assert figures["per_s"] > 0 and figures["p99_ms"] >= figures["p50_ms"] > 0
            elif scenario == "streams":
                assert figures["nodes"] in (4, 8) and figures["acked"] > 0
                assert figures["p99_ms"] >= figures["p50_ms"] > 0
            elif scenario == "storm":
                assert figures["got_policy"] + figures["refused"] == 8
                assert figures["got_policy"] > 0
            elif scenario == "upload":
                assert figures["failed"] == [] and figures["files"] in (1, 6)
                assert figures["mb_per_s"] > 0
        assert all(isinstance(value, float) for value in case["ratio"].values())


def test_an_unknown_scenario_is_refused_with_the_choices() -> None:
    result = run_cli("bench", "nope")
    assert result.exit_code != 0
    assert "joins, rejoins, streams, storm, dispatch, upload" in result.output


@pytest.mark.timeout(300)  # two throwaway hubs of two processes each, on 2 cores
def test_one_and_two_hub_processes_side_by_side_on_postgresql(pg_url: str) -> None:
    report = cli_json("bench", "streams", "--processes", "1,2", "--database-url", pg_url, *TINY)
    assert report["machine"]["store"] == "postgresql"
    assert report["machine"]["processes"] == [1, 2]
    cases = report["scenarios"]["streams"]
    assert sorted(case["processes"] for case in cases) == [1, 1, 2, 2]
    for case in cases:
        # Both processes' CPU counts (the parent supervises, its children serve).
        assert case["hub"]["acked"] > 0 and case["hub"]["cpu_percent"] > 0
    table = run_cli("bench", "joins", "--processes", "1,2", "--database-url", pg_url, *TINY)
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if "FIGURE" in line)
    assert "1 PROCESS" in header and "2 PROCESSES" in header
    per_s = next(line for line in table.output.splitlines() if " per_s " in line)
    assert len(per_s.split()) >= 2 + 2  # a figure for each process count


def test_two_hub_processes_on_sqlite_are_refused() -> None:
    result = run_cli("bench", "streams", "--processes", "1,2")
    assert result.exit_code == 2
    assert "--processes above 1 needs PostgreSQL" in result.output

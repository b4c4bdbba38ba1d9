"""The status page's history chart in a real browser: it keeps its one-second readings, draws every worker's in-use
and waiting lines, the server's count against the budget and the wait p99, and shows a saturation when a load makes
one."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.mariadb import PrivateMariaDB
from harness.tools import Gunicorn
from tests.browser import chromium, wait_for

pytestmark = pytest.mark.slow
WORKERS, POOL = 2, 5

READ_CHART = """
const chart = document.getElementById('history'), p99 = document.getElementById('history-p99');
const roles = [...chart.querySelectorAll('polyline')].map((line) => line.dataset.role);
const highest = (role) => Math.min(...[...chart.querySelectorAll(`polyline[data-role^="${role}"]`)]
  .flatMap((line) => line.getAttribute('points').split(' ').map((p) => Number(p.split(',')[1]))));
return {samples: Number(chart.dataset.samples || 0), saturated: Number(chart.dataset.saturated || 0),
        bands: chart.querySelectorAll('rect.saturated').length, roles,
        waitingTop: highest('waiting'), baseline: chart.getBoundingClientRect().height - 18,
        p99Peak: Number(p99.dataset.peak || 0), history: window.poolHistory.length,
        lastServer: window.poolHistory.length ? window.poolHistory[window.poolHistory.length - 1].server : null};
"""


def test_the_status_page_charts_its_history_and_a_saturation(site_db: PrivateMariaDB, tmp_path: Path) -> None:
    server = Gunicorn(site_db).start()
    workers = server.worker_pids()
    try:
        with chromium() as driver:
            driver.get(f"{server.base}/")
            calm = wait_for(lambda: (lambda r: r if r["samples"] >= 3 and r["lastServer"] is not None else None)(
                driver.execute_script(READ_CHART)), "three samples with the server's count")
            # 30 clients of 0.1 s queries on 2 x 5 connections for a few seconds: saturated, callers queue.
            thread, result = server.load_in_background(clients=30, requests=20, paths="/report/slow/?seconds=0.1")
            thread.join(120)
            # A reading after the load, so the band has an end: two more of the page's readings, the second one asked
            # for after the load ended (the first may have been under way as it did).
            ended = driver.execute_script(READ_CHART)["samples"]
            after = wait_for(lambda: (lambda r: r if r["samples"] >= ended + 2 else None)(
                driver.execute_script(READ_CHART)), "a reading after the load")
            driver.save_screenshot(str(tmp_path / "status-history.png"))
    finally:
        server.stop()
    print(f"\nbefore the load: {calm['samples']} samples, saturated {calm['saturated']}; after: {after['samples']} "
          f"samples, {after['saturated']} saturated in {after['bands']} band(s), wait p99 peak {after['p99Peak']:.0f} "
          f"ms, load {result['statuses']}; screenshot {tmp_path / 'status-history.png'}")
    assert calm["saturated"] == 0 and calm["p99Peak"] == 0
    assert after["samples"] == after["history"] >= calm["samples"] + 5
    assert {f"in_use-{pid}" for pid in workers} | {f"waiting-{pid}" for pid in workers} | {"server", "budget"} \
        <= set(after["roles"])
    assert after["saturated"] > 0 and after["bands"] > 0, "the chart never showed the saturation"
    assert after["waitingTop"] < after["baseline"] - 5, "no waiting line rose above zero"
    assert after["p99Peak"] > 0
    assert result["failed"] == 0

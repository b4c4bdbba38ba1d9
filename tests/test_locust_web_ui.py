"""locust's web UI shows the budget gate: a run started from the page in a real browser draws the app's connections on
the server, live, against the budget line, and ends with the verdict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.mariadb import PrivateMariaDB, free_port
from harness.tools import ROOT, Gunicorn
from tests.browser import chromium, text_of, wait_for

pytestmark = pytest.mark.slow


def test_a_run_started_in_the_web_ui_charts_connections_against_the_budget(site_db: PrivateMariaDB,
                                                                            tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server = Gunicorn(site_db).start()  # 2 workers x pool 5
    port = free_port()
    log = (tmp_path / "locust.log").open("w")
    # The web UI with the default mix (no class named); -t bounds any run started from the page.
    ui = subprocess.Popen(
        [str(Path(sys.executable).parent / "locust"), "-f", "loadtest/", "--host", server.base, "--web-host",
         "127.0.0.1", "--web-port", str(port), "-t", "40s"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": site_db.app_url(), "WEB_WORKERS": "2",
             "POOL_SIZE": "5"},
    )
    try:
        with chromium(1400, 950) as driver:
            wait_for(lambda: _loaded(driver, f"http://127.0.0.1:{port}/"), "locust's start form")
            for name, value in (("userCount", "30"), ("spawnRate", "30")):
                field = driver.find_element(By.NAME, name)
                field.send_keys(Keys.CONTROL, "a")
                field.send_keys(value)
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

            samples = wait_for(lambda: _samples(driver) >= 8 and _samples(driver), "samples on the chart")
            live_state = text_of(driver, "kit-db-state")
            budget_label = text_of(driver, "kit-db-budget-label")
            points = driver.find_element(By.ID, "kit-db-samples").get_attribute("points").split()
            driver.save_screenshot(str(tmp_path / "locust-live.png"))

            wait_for(lambda: _click_button(driver, "STOP"), "the STOP button")
            verdict = wait_for(lambda: text_of(driver, "kit-db-verdict"), "the verdict", timeout=30)
            driver.save_screenshot(str(tmp_path / "locust-verdict.png"))
    finally:
        ui.send_signal(signal.SIGTERM)
        try:
            ui.wait(30)
        except subprocess.TimeoutExpired:
            ui.kill()
        server.stop()
    print(f"\nchart: {samples} samples, '{budget_label}', live '{live_state}'; verdict: {verdict}; screenshots in "
          f"{tmp_path}")
    assert budget_label == "budget 10"
    assert live_state.startswith("now ") and "peak" in live_state
    assert len(points) >= samples  # a step line: at least one point per sample
    assert "budget 10 = 1 host(s) x 2 workers x pool 5: within budget" in verdict
    assert "counting the connections of 'app'" in (tmp_path / "locust.log").read_text()


def _loaded(driver: Any, url: str) -> bool:
    from selenium.webdriver.common.by import By

    if not driver.find_elements(By.NAME, "userCount"):
        driver.get(url)  # locust may still be starting: ask again
    return bool(driver.find_elements(By.NAME, "userCount")) and bool(driver.find_elements(By.ID, "kit-db"))


def _samples(driver: Any) -> int:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.ID, "kit-db-samples")
    return int(found[0].get_attribute("data-samples") or 0) if found else 0


def _click_button(driver: Any, label: str) -> bool:
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.TAG_NAME, "button"):
        if button.text.strip().upper() == label:
            button.click()
            return True
    return False

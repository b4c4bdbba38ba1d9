"""The connection budget gate, shared by every scenario (imported by each; locust skips files starting with `_`).

While a test runs, the master (or the local runner) polls the database server and counts the app user's
connections. At the end it prints peak and mean against the budget, writes them beside locust's CSV and into its HTML
report, and makes locust exit non-zero when the peak went over.

The budget is hosts x workers x pool size, read from gunicorn.conf.py (with the same POOL_*/WEB_WORKERS environment
gunicorn sees), so there is no second copy of the numbers to drift.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import events

from pool.budget import count_app_connections
from locust.runners import LocalRunner, MasterRunner

log = logging.getLogger("loadtest.budget")
ROOT = Path(__file__).resolve().parent.parent
POLL_INTERVAL = 0.25
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--budget-conf", default=str(ROOT / "gunicorn.conf.py"), env_var="KIT_BUDGET_CONF",
                        help="gunicorn conf to read workers and the pool size from")
    parser.add_argument("--budget-hosts", type=int, default=1, env_var="KIT_BUDGET_HOSTS",
                        help="app hosts sharing the database (budget = hosts x workers x pool size)")
    parser.add_argument("--db-url", default="", env_var="KIT_MONITOR_DATABASE_URL",
                        help="where to count connections (default: DATABASE_URL); the app's own credentials suffice")
    parser.add_argument("--app-user", default="", env_var="KIT_APP_DB_USER",
                        help="the database user whose connections are counted (default: DATABASE_URL's user)")


@dataclass
class Verdict:
    budget: int
    workers: int
    pool_size: int
    hosts: int
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return max((n for _, n in self.samples), default=0)

    @property
    def mean(self) -> float:
        return sum(n for _, n in self.samples) / len(self.samples) if self.samples else 0.0

    @property
    def over(self) -> bool:
        return self.peak > self.budget

    def summary(self) -> str:
        verdict = "OVER BUDGET" if self.over else "within budget"
        return (f"db connections: peak {self.peak}, mean {self.mean:.1f} over {len(self.samples)} samples; budget "
                f"{self.budget} = {self.hosts} host(s) x {self.workers} workers x pool {self.pool_size}: {verdict}")


def read_budget(conf_path: str, hosts: int) -> tuple[int, int, int]:
    """(budget, workers, pool size) as gunicorn would see them with this environment."""
    from pool.budget import read_gunicorn_conf

    workers, size = read_gunicorn_conf(conf_path)
    return hosts * workers * size, workers, size


def monitor_target(options: Any) -> tuple[dict[str, Any], str]:
    from pool.dburl import parse_database_url

    url = options.db_url or os.environ.get("DATABASE_URL", "")
    if not url:
        raise SystemExit("the budget gate needs DATABASE_URL (or --db-url) to count the app's connections")
    kwargs = parse_database_url(url)
    kwargs.pop("options", None)
    user = options.app_user or kwargs["user"]
    return kwargs, user


class _Gate:
    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []
        self._poller: gevent.Greenlet | None = None

    def start(self, environment: Any) -> None:
        options = environment.parsed_options
        budget, workers, size = read_budget(options.budget_conf, options.budget_hosts)
        verdict = Verdict(budget, workers, size, options.budget_hosts)
        self.verdicts.append(verdict)
        kwargs, user = monitor_target(options)
        self._poller = gevent.spawn(self._poll, kwargs, user, verdict)

    def _poll(self, kwargs: dict[str, Any], user: str, verdict: Verdict) -> None:
        import pymysql

        conn = pymysql.connect(**kwargs, autocommit=True, connect_timeout=5, read_timeout=10)
        started = time.monotonic()
        try:
            with conn.cursor() as cursor:
                while True:
                    verdict.samples.append((time.monotonic() - started, count_app_connections(cursor, user)))
                    gevent.sleep(POLL_INTERVAL)
        finally:
            conn.close()

    def stop(self, environment: Any) -> None:
        if self._poller is None:
            return
        self._poller.kill(block=True, timeout=5)
        self._poller = None
        verdict = self.verdicts[-1]
        log.info(verdict.summary())
        print(verdict.summary(), flush=True)
        options = environment.parsed_options
        if getattr(options, "csv_prefix", None):
            self._write_csv(options.csv_prefix, verdict)

    @staticmethod
    def _write_csv(prefix: str, verdict: Verdict) -> None:
        with open(f"{prefix}_db_connections.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seconds", "app_connections", "budget"])
            writer.writerows((f"{t:.2f}", n, verdict.budget) for t, n in verdict.samples)
        with open(f"{prefix}_db_connections_summary.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["peak", "mean", "samples", "budget", "workers", "pool_size", "hosts", "verdict"])
            writer.writerow([verdict.peak, f"{verdict.mean:.2f}", len(verdict.samples), verdict.budget,
                             verdict.workers, verdict.pool_size, verdict.hosts, "over" if verdict.over else "ok"])


_gate = _Gate()


def _polls_here(environment: Any) -> bool:
    # Workers in distributed mode (and --processes children) send load only; the master counts.
    return isinstance(environment.runner, (MasterRunner, LocalRunner))


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    host = urlsplit(environment.host or "").hostname
    if host and host not in LOOPBACK and os.environ.get("KIT_ALLOW_REMOTE_LOAD") != "1":
        raise SystemExit(f"refusing to send load to {host}: the kit's scenarios target loopback only "
                         f"(set KIT_ALLOW_REMOTE_LOAD=1 for a staging host you own)")
    options = environment.parsed_options
    if options is not None and options.headless and not options.run_time and not options.worker:
        raise SystemExit("give --run-time (-t) in headless mode, so the load stops by itself")
    if environment.web_ui is not None:
        @environment.web_ui.app.route("/db-connections")
        def _db_connections() -> dict[str, Any]:
            latest = _gate.verdicts[-1] if _gate.verdicts else None
            return {"runs": [{"peak": v.peak, "mean": round(v.mean, 2), "budget": v.budget, "over": v.over}
                             for v in _gate.verdicts],
                    "now": latest.samples[-1][1] if latest and latest.samples else None}


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    if _polls_here(environment):
        _gate.start(environment)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    if _polls_here(environment):
        _gate.stop(environment)


@events.quitting.add_listener
def _on_quitting(environment: Any, **_: Any) -> None:
    if not _polls_here(environment) or not _gate.verdicts:
        return
    html_file = getattr(environment.parsed_options, "html_file", None)
    if html_file and os.path.exists(html_file):
        _append_to_html(html_file, _gate.verdicts)
    over = [v for v in _gate.verdicts if v.over]
    if over:
        print(f"FAILED: the app's database connections went over budget: {over[-1].summary()}. Lower POOL_SIZE or "
              f"WEB_WORKERS, or look for connections opened outside the pool.", flush=True)
        environment.process_exit_code = 1


def _append_to_html(path: str, verdicts: list[Verdict]) -> None:
    rows = "".join(
        f"<tr><td>{v.peak}</td><td>{v.mean:.1f}</td><td>{v.budget} ({v.hosts} x {v.workers} x {v.pool_size})</td>"
        f"<td>{'OVER' if v.over else 'ok'}</td></tr>" for v in verdicts
    )
    section = (
        '<section id="db-connections" style="font-family:sans-serif;padding:1em">'
        "<h2>Database connections (app user, polled on the server)</h2>"
        "<table border=1 cellpadding=4><tr><th>peak</th><th>mean</th><th>budget</th><th>verdict</th></tr>"
        f"{rows}</table></section>"
    )
    text = Path(path).read_text(encoding="utf-8")
    Path(path).write_text(text.replace("</body>", section + "</body>") if "</body>" in text else text + section,
                          encoding="utf-8")

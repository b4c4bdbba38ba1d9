"""The connection budget gate, shared by every scenario (imported by each; locust skips files starting with `_`).

While a test runs, the master (or the local runner) polls the database server and counts the app user's
connections. At the end it prints peak and mean against the budget, writes them beside locust's CSV and into its HTML
report, and makes locust exit non-zero when the peak went over. In the web UI it draws them live, against the budget.

The budget is hosts x workers x server_size, or pool size without it, read from gunicorn.conf.py (with the same
POOL_*/WEB_WORKERS environment gunicorn sees), so there is no second copy of the numbers to drift. Each app host
(client address, as the server lists it) is held to its share, workers x the same, too: a host over its share fails
the run even when the total fits. Each database (PROCESSLIST.DB: an alias's, or a tenant's) gets its peak reported
beside what one alias may hold, hosts x workers x pool size; that line informs, the server's total decides.

Where it counts: --db-url, else DATABASE_URL, else the private MariaDB of a kit that `scripts/serve` runs on this
machine for the --host being loaded (run/serve.json). Without any of them it says so in one line and the load runs
uncounted; --budget-required makes that a failure.
"""

from __future__ import annotations

import csv
import html
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import events
from locust.runners import LocalRunner, MasterRunner

ROOT = Path(__file__).resolve().parent.parent
POLL_INTERVAL = 0.25
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The web UI's chart gets at most this many points (each the peak of its stretch of samples), however long the run.
CHART_POINTS = 600


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--budget-conf", default=str(ROOT / "gunicorn.conf.py"), env_var="KIT_BUDGET_CONF",
                        help="gunicorn conf to read workers, the pool size and server_size from")
    parser.add_argument("--budget-hosts", type=int, default=1, env_var="KIT_BUDGET_HOSTS",
                        help="app hosts sharing the database (budget = hosts x workers x server_size, or pool size)")
    parser.add_argument("--db-url", default="", env_var="KIT_MONITOR_DATABASE_URL",
                        help="where to count connections (default: DATABASE_URL, else the database of a kit that "
                             "scripts/serve runs here); the app's own credentials suffice")
    parser.add_argument("--app-user", default="", env_var="KIT_APP_DB_USER",
                        help="the database user whose connections are counted (default: the URL's user)")
    parser.add_argument("--budget-required", action="store_true", default=False, env_var="KIT_BUDGET_REQUIRED",
                        help="fail the run when the gate cannot count (by default it says so and the load runs)")


@dataclass
class Verdict:
    budget: int
    workers: int
    pool_size: int
    hosts: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    where: str = ""
    not_counted: str = ""  # why no sample could be taken, when none was
    server: str = ""  # which server, when the run counts on more than one (a host list, a replica)
    host_peaks: dict[str, int] = field(default_factory=dict)  # client address -> its peak, as the server listed it
    server_size: int | None = None  # a worker's budget on the server, shared by its pools (None: pool size counts)
    db_peaks: dict[str, int] = field(default_factory=dict)  # PROCESSLIST.DB -> its peak ("": none selected)

    @property
    def per_worker(self) -> str:
        return f"server_size {self.server_size}" if self.server_size is not None else f"pool {self.pool_size}"

    @property
    def share(self) -> int:
        """What one app host may hold: workers x server_size, or pool size."""
        return self.workers * (self.server_size if self.server_size is not None else self.pool_size)

    @property
    def alias_bound(self) -> int:
        """The most one alias (one pool per worker) may hold on the server: hosts x workers x pool size."""
        return self.hosts * self.workers * self.pool_size

    @property
    def alias_formula(self) -> str:
        hosts = f"{self.hosts} host(s) x " if self.hosts != 1 else ""
        return f"{hosts}{self.workers} workers x pool {self.pool_size}"

    @property
    def hosts_over(self) -> dict[str, int]:
        return {address: peak for address, peak in self.host_peaks.items() if peak > self.share}

    @property
    def per_host(self) -> bool:
        """Whether the verdict names each app host: when the server listed more than one, or more were budgeted."""
        return len(self.host_peaks) > 1 or self.hosts > 1

    @property
    def peak(self) -> int:
        return max((n for _, n in self.samples), default=0)

    @property
    def mean(self) -> float:
        return sum(n for _, n in self.samples) / len(self.samples) if self.samples else 0.0

    @property
    def counted(self) -> bool:
        return bool(self.samples)

    @property
    def over(self) -> bool:
        return self.peak > self.budget or bool(self.hosts_over)

    @property
    def formula(self) -> str:
        return f"{self.hosts} host(s) x {self.workers} workers x {self.per_worker}"

    def summary(self) -> str:
        label = f"db connections on {self.server}" if self.server else "db connections"
        if not self.counted:
            return f"{label}: not counted ({self.not_counted}); budget {self.budget} = {self.formula}"
        verdict = "OVER BUDGET" if self.peak > self.budget else "within budget"
        return (f"{label}: peak {self.peak}, mean {self.mean:.1f} over {len(self.samples)} samples; budget "
                f"{self.budget} = {self.formula}: {verdict}")

    def host_summaries(self) -> list[str]:
        """One line per app host: its peak against its share."""
        where = f" on {self.server}" if self.server else ""
        lines = [f"db connections from app host {address}{where}: peak {peak}; share {self.share} = {self.workers} "
                 f"workers x {self.per_worker}: {'OVER ITS SHARE' if peak > self.share else 'within its share'}"
                 for address, peak in sorted(self.host_peaks.items())]
        if len(self.host_peaks) > self.hosts:
            lines.append(f"db connections{where}: the server listed {len(self.host_peaks)} app hosts, the budget "
                         f"counts {self.hosts} (--budget-hosts)")
        return lines

    def database_summaries(self) -> list[str]:
        """One line per database: its peak beside the server's, and what one alias may hold. Informative only: two
        aliases may share a database (isolation levels), and tenants' pools are bounded together by server_size."""
        where = f" on {self.server}" if self.server else ""
        lines = []
        for database, peak in sorted(self.db_peaks.items()):
            above = ("; above one alias's bound: several aliases use this database, or connections come from outside "
                     "the pool" if peak > self.alias_bound else "")
            lines.append(f"db connections to database {database or '(none)'}{where}: peak {peak} (the server's "
                         f"{self.peak}); each alias up to {self.alias_bound} = {self.alias_formula}{above}")
        return lines

    def chart(self) -> list[tuple[float, int]]:
        """The samples thinned to at most CHART_POINTS, keeping each stretch's peak (a spike must not vanish)."""
        step = max(1, -(-len(self.samples) // CHART_POINTS))
        return [max(self.samples[i:i + step], key=lambda s: s[1]) for i in range(0, len(self.samples), step)]


def read_budget(conf_path: str, hosts: int) -> tuple[int, int, int, int | None]:
    """(budget, workers, pool size, server_size) as gunicorn would see them with this environment."""
    from pool.budget import read_gunicorn_conf

    workers, size, server_size = read_gunicorn_conf(conf_path)
    return hosts * workers * (server_size if server_size is not None else size), workers, size, server_size


# -- where to count --------------------------------------------------------------------------------------------------

def serve_state_path() -> Path:
    """Where deploy/serve.py (scripts/serve) leaves the private database's URL: keep in step with it."""
    return Path(os.environ.get("KIT_RUN_DIR") or ROOT / "run") / "serve.json"


def _port_of(address: str) -> int | None:
    if address.startswith(("unix:", "fd://")):
        return None
    _, _, port = address.rpartition(":")
    return int(port) if port.isdigit() else None


def _from_serve_state(host: str | None) -> tuple[str, str] | str:
    """(url, where) of the kit scripts/serve runs for `host`, or why there is none."""
    path = serve_state_path()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        url, binds, pid = state["database_url"], list(state["bind"]), int(state["pid"])
    except FileNotFoundError:
        return f"no DATABASE_URL, and no kit started by scripts/serve on this machine ({path} not found)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"no DATABASE_URL, and {path} is unreadable ({type(exc).__name__})"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"no DATABASE_URL, and {path} is left from a scripts/serve that is no longer running"
    except PermissionError:
        pass
    target = urlsplit(host or "")
    port = target.port or (443 if target.scheme == "https" else 80)
    if host and port not in {_port_of(b) for b in binds}:
        return f"no DATABASE_URL, and the kit scripts/serve runs here serves {', '.join(binds)}, not {host}"
    return url, f"the private MariaDB scripts/serve started for {', '.join(binds)}; from {path}"


Target = tuple[dict[str, Any], str, str, str]  # (connect kwargs, user to count, where, server label)


def find_databases(options: Any, host: str | None) -> list[Target] | str:
    """Every server to count on: the app's database (each host of a host list: with failover any of them may hold
    every connection, so each is held to the whole budget) and REPLICA_DATABASE_URL's, if set (a replica has pools of
    its own, so the same budget again). A one-line reason instead when there is nothing to count on."""
    found = find_database(options, host)
    if isinstance(found, str) and not found.startswith(_HOST_LIST):
        return found
    targets: list[Target] = []
    from pool.dburl import parse_database_url
    from pool.errors import ConfigError
    from pool.hosts import HostList

    urls = [("app", options.db_url or os.environ.get("DATABASE_URL", ""))] if isinstance(found, str) else []
    if not isinstance(found, str):
        kwargs, user, where = found
        targets.append((kwargs, user, where, ""))
    if os.environ.get("REPLICA_DATABASE_URL"):
        urls.append(("replica", os.environ["REPLICA_DATABASE_URL"]))
    for role, url in urls:
        try:
            kwargs = parse_database_url(url, source="REPLICA_DATABASE_URL" if role == "replica" else "DATABASE_URL")
        except ConfigError as exc:
            return str(exc)
        user = options.app_user or kwargs["user"]
        for server_host, server_port in HostList.from_connect_kwargs(kwargs):
            label = f"{server_host}:{server_port}"
            one = {**kwargs, "host": server_host, "port": server_port}
            targets.append((one, user, f"the connections of {user!r} on {label} ({role})", label))
    if len(targets) > 1:
        for index, (kwargs, user, where, label) in enumerate(targets):
            if not label:
                targets[index] = (kwargs, user, where, kwargs.get("unix_socket") or f"{kwargs['host']}:"
                                  f"{kwargs.get('port', 3306)}")
    return targets


_HOST_LIST = "several hosts:"


def find_database(options: Any, host: str | None) -> tuple[dict[str, Any], str, str] | str:
    """(connect kwargs, user to count, where) for the gate, or a one-line reason why it cannot count."""
    from pool.dburl import parse_database_url
    from pool.errors import ConfigError

    if options.db_url:
        url, source, where = options.db_url, "--db-url", "from --db-url"
    elif os.environ.get("DATABASE_URL"):
        url, source, where = os.environ["DATABASE_URL"], "DATABASE_URL", "from DATABASE_URL"
    else:
        found = _from_serve_state(host)
        if isinstance(found, str):
            return found
        (url, where), source = found, "run/serve.json"
    try:
        kwargs = parse_database_url(url, source=source)
    except ConfigError as exc:
        return str(exc)
    if "," in kwargs["host"]:
        return f"{_HOST_LIST} {source} lists several hosts"
    user = options.app_user or kwargs["user"]
    server = kwargs.get("unix_socket") or f"{kwargs['host']}:{kwargs.get('port', 3306)}"
    return kwargs, user, f"the connections of {user!r} on {server} ({where})"


# -- the gate --------------------------------------------------------------------------------------------------------

class _Gate:
    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []  # every server of every run, in order
        self.runs: list[list[Verdict]] = []  # the same, a list per run
        self._current: list[Verdict] = []  # the run under way: one verdict per server
        self._pollers: list[gevent.Greenlet] = []

    @property
    def _poller(self) -> gevent.Greenlet | None:
        return self._pollers[0] if self._pollers else None

    def start(self, environment: Any) -> None:
        options = environment.parsed_options
        budget, workers, size, server_size = read_budget(options.budget_conf, options.budget_hosts)
        found = find_databases(options, environment.host)
        if isinstance(found, str):
            verdict = Verdict(budget, workers, size, options.budget_hosts, not_counted=found, server_size=server_size)
            self.verdicts.append(verdict)
            self._current = [verdict]
            self.runs.append(self._current)
            required = "" if options.budget_required else " The load runs uncounted (--budget-required to fail)."
            _say(f"budget gate: cannot count: {found}. Set DATABASE_URL to the app's database.{required}")
            return
        self._current = []
        self.runs.append(self._current)
        for kwargs, user, where, server in found:
            verdict = Verdict(budget, workers, size, options.budget_hosts, where=where, server=server,
                              server_size=server_size)
            self.verdicts.append(verdict)
            self._current.append(verdict)
            _say(f"budget gate: counting {verdict.where}; budget {budget} = {verdict.formula}")
            self._pollers.append(gevent.spawn(self._poll, kwargs, user, verdict))

    def _poll(self, kwargs: dict[str, Any], user: str, verdict: Verdict) -> None:
        import pymysql

        from pool.budget import connect_monitor, read_tier

        try:
            conn = connect_monitor(kwargs)
        except pymysql.err.MySQLError as exc:
            verdict.not_counted = f"cannot connect to count {verdict.where}: {exc.args[-1] if exc.args else exc}"
            _say(f"budget gate: {verdict.not_counted}")
            return
        started = time.monotonic()
        try:
            with conn.cursor() as cursor:
                while True:
                    tier = read_tier(cursor, user)
                    verdict.samples.append((time.monotonic() - started, tier.total))
                    for address, n in tier.counts.items():
                        verdict.host_peaks[address] = max(n, verdict.host_peaks.get(address, 0))
                    for database, n in tier.databases.items():
                        verdict.db_peaks[database] = max(n, verdict.db_peaks.get(database, 0))
                    gevent.sleep(POLL_INTERVAL)
        except pymysql.err.MySQLError as exc:
            # The samples so far stand; the verdict says counting stopped.
            verdict.not_counted = f"counting stopped: {exc.args[-1] if exc.args else exc}"
            _say(f"budget gate: {verdict.not_counted}")
        finally:
            conn.close()

    def stop(self, environment: Any) -> None:
        verdicts, self._current = list(self._current), []
        if not verdicts:  # locust may report a stop twice
            return
        pollers, self._pollers = self._pollers, []
        for poller in pollers:
            poller.kill(block=True, timeout=5)
        options = environment.parsed_options
        for index, verdict in enumerate(verdicts):
            _say(verdict.summary())
            if verdict.per_host:
                for line in verdict.host_summaries():
                    _say(line)
            for line in verdict.database_summaries():
                _say(line)
            if getattr(options, "csv_prefix", None):
                self._write_csv(options.csv_prefix + (f"_{index + 1}" if index else ""), verdict)

    @staticmethod
    def _write_csv(prefix: str, verdict: Verdict) -> None:
        with open(f"{prefix}_db_connections.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["seconds", "app_connections", "budget"])
            writer.writerows((f"{t:.2f}", n, verdict.budget) for t, n in verdict.samples)
        with open(f"{prefix}_db_connections_summary.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["peak", "mean", "samples", "budget", "workers", "pool_size", "hosts", "verdict",
                             "server_size"])
            outcome = ("over" if verdict.over else "ok") if verdict.counted else "not counted"
            writer.writerow([verdict.peak, f"{verdict.mean:.2f}", len(verdict.samples), verdict.budget,
                             verdict.workers, verdict.pool_size, verdict.hosts, outcome,
                             "" if verdict.server_size is None else verdict.server_size])
        with open(f"{prefix}_db_connections_hosts.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["app_host", "peak", "share", "verdict"])
            writer.writerows((address, peak, verdict.share, "over" if peak > verdict.share else "ok")
                             for address, peak in sorted(verdict.host_peaks.items()))
        with open(f"{prefix}_db_connections_databases.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["database", "peak", "server_peak", "alias_bound"])
            writer.writerows((database, peak, verdict.peak, verdict.alias_bound)
                             for database, peak in sorted(verdict.db_peaks.items()))

    def report(self) -> dict[str, Any]:
        """What the web UI's chart shows: the latest run's samples against its budget, and its verdict once over."""
        latest_run = self._current or self._latest_run()
        latest = latest_run[0] if latest_run else None
        runs = [{"peak": v.peak, "mean": round(v.mean, 2), "budget": v.budget, "over": v.over, "counted": v.counted,
                 "server": v.server} for v in self.verdicts]
        if latest is None:
            return {"state": "waiting", "runs": runs, "now": None}
        finished = not self._current
        counting = self._poller is not None and not self._poller.dead
        return {
            "state": "counting" if counting else ("finished" if finished and latest.counted else "not counted"),
            "where": latest.where, "reason": latest.not_counted,
            "budget": latest.budget, "formula": latest.formula,
            "samples": [[round(t, 2), n] for t, n in latest.chart()],
            "now": latest.samples[-1][1] if latest.samples else None,
            "peak": latest.peak if latest.counted else None,
            "verdict": latest.summary() if finished else None,
            "over": latest.over if finished and latest.counted else None,
            "servers": [{"server": v.server, "now": v.samples[-1][1] if v.samples else None, "peak": v.peak,
                         "verdict": v.summary() if finished else None, "host_peaks": dict(v.host_peaks),
                         "share": v.share, "db_peaks": dict(v.db_peaks), "alias_bound": v.alias_bound}
                        for v in latest_run],
            "runs": runs,
        }

    def _latest_run(self) -> list[Verdict]:
        return self.runs[-1] if self.runs else []


def _say(line: str) -> None:
    print(line, flush=True)


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
    if environment.web_ui is not None and _polls_here(environment):
        _add_to_web_ui(environment.web_ui, (getattr(options, "web_base_path", "") or "").rstrip("/"))


def _add_to_web_ui(web_ui: Any, base: str) -> None:
    from flask import Response, jsonify, request

    panel = Path(__file__).with_name("_panel.js")

    @web_ui.app.route(f"{base}/db-connections")
    def _db_connections() -> Any:
        return jsonify(_gate.report())

    @web_ui.app.route(f"{base}/db-connections/panel.js")
    def _panel_js() -> Any:
        return Response(panel.read_text(encoding="utf-8"), mimetype="application/javascript")

    @web_ui.app.after_request
    def _with_panel(response: Any) -> Any:
        # locust's page is a built React app with a fixed set of charts: the chart of server connections is a panel
        # of its own, added beside the app's root rather than inside it, so the app's updates never touch it.
        if request.endpoint == "locust.index" and response.mimetype == "text/html":
            html = response.get_data(as_text=True)
            response.set_data(html.replace("</body>", '<script src="./db-connections/panel.js"></script></body>', 1))
        return response


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
    over = [v for v in _gate.verdicts if v.peak > v.budget]
    hosts_over = [(v, address) for v in _gate.verdicts for address in sorted(v.hosts_over)]
    if over:
        lower = "POOL_SERVER_SIZE" if over[-1].server_size is not None else "POOL_SIZE"
        print(f"FAILED: the app's database connections went over budget: {over[-1].summary()}. Lower {lower} or "
              f"WEB_WORKERS, or look for connections opened outside the pool.", flush=True)
        environment.process_exit_code = 1
    elif hosts_over:
        verdict, address = hosts_over[-1]
        print(f"FAILED: app host {address} went over its share: peak {verdict.host_peaks[address]} > "
              f"{verdict.share} = {verdict.workers} workers x {verdict.per_worker}, though the total fits. Look "
              f"for a host with more workers or a bigger pool than the others, or connections it opens outside the "
              f"pool.", flush=True)
        environment.process_exit_code = 1
    elif environment.parsed_options.budget_required and not all(v.counted for v in _gate.verdicts):
        print(f"FAILED: --budget-required, and the gate could not count: {_gate.verdicts[-1].not_counted}",
              flush=True)
        environment.process_exit_code = 1


def _append_to_html(path: str, verdicts: list[Verdict]) -> None:
    rows = "".join(
        f"<tr><td>{v.peak if v.counted else '-'}</td><td>{v.mean:.1f}</td><td>{v.budget} ({v.formula})</td>"
        f"<td>{('OVER' if v.peak > v.budget else 'ok') if v.counted else 'not counted'}</td></tr>"
        + "".join(f"<tr><td>{peak}</td><td>app host {address}</td><td>{v.share} (its share)</td>"
                  f"<td>{'OVER' if peak > v.share else 'ok'}</td></tr>"
                  for address, peak in sorted(v.host_peaks.items()) if v.per_host)
        + "".join(f"<tr><td>{peak}</td><td>database {html.escape(database or '(none)')}</td>"
                  f"<td>{v.alias_bound} (each alias: {v.alias_formula})</td>"
                  f"<td>{'above one alias' if peak > v.alias_bound else 'ok'}</td></tr>"
                  for database, peak in sorted(v.db_peaks.items()))
        for v in verdicts
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

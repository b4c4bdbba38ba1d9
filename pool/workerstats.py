"""Every worker's pool figures, readable from any worker.

Each gunicorn worker writes a JSON snapshot of its pools into one shared directory about once a second; whichever
worker answers `/-/pool` (or the status page) reads them all, so an answer covers every worker, not only itself.

While someone watches (a reader asked for it within the last WATCH_SECONDS), one worker, elected by an flock, also
counts the app's connections on the database server, over one connection of its own and never a pool's. That
connection is a monitor (`pool.budget.MONITOR_DATABASE`): the count leaves it out, and so does the locust gate's, so
watching a saturated pool changes no verdict. Nobody watching, no extra connection.

Nothing here imports Django or gunicorn.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from .background import start_background
from .core import ConnectionPool, all_pools, server_budgets, subscribe_pools, unsubscribe_pools
from .stats import IMMEDIATE, SIZE, TABLE, Combine, wait_buckets

log = logging.getLogger("pool.workerstats")

ENV_DIR = "POOL_STATS_DIR"
PUBLISH_INTERVAL = 1.0
# A page polls every second; a count nobody has asked for in this long stops, and its connection closes.
WATCH_SECONDS = 30.0
# A reading older than this is from a counter that stopped (its worker died or hangs); the next worker takes over.
FRESH_SECONDS = 5.0
_SNAPSHOT = "worker-{pid}.json"
_SERVER = "server-count.json"
_WATCH = "server-count.watch"
_LOCK = "server-count.lock"
# How each statistic adds up in the totals; a key the table lacks (a worker of another version, mid-reload) is a sum.
_COMBINE: dict[str, Combine] = {s.name: s.combine for s in TABLE}


def _now() -> float:
    # CLOCK_MONOTONIC is one clock for every process of the machine, so ages compare across workers.
    return time.monotonic()


def this_process() -> dict[str, Any]:
    """This process's snapshot: its pid, every pool's statistics by pool name, and how many of its callers' waits fell
    in each bucket (per pool, bounds in `overview()["wait_bounds"]`; the last count is for waits past the last bound),
    for the status page's wait p99. Every caller that got a slot or gave up is in the buckets, those that found a slot
    free as a wait of 0, so that the page's p99 is the p99 /metrics and OpenTelemetry give."""
    _track_waits()
    stats = {}
    pools = all_pools()
    for pool in pools:
        stats[pool.name] = figures = pool.stats()
        _count_zero_waits(pool, figures)
    servers = [budget.stats() for budget in server_budgets()]
    return {"pid": os.getpid(), "at": _now(), "pools": stats, "servers": servers, "cap": _cap(pools),
            "wait_buckets": {name: list(counts) for name, counts in _wait_buckets.items()}}


def _cap(pools: list[ConnectionPool]) -> int:
    """The most connections this process may hold: each server budget (or the sizes of its pools, if smaller), and
    the size of each pool outside a budget."""
    cap = 0
    for budget in server_budgets():
        sizes = sum(p.config.size for p in pools if p.server == budget.key and p.config.server_size is not None)
        cap += min(budget.size, sizes)
    return cap + sum(p.config.size for p in pools if p.config.server_size is None)


# Seconds: the upper bounds of the wait buckets the snapshots count (0, then 1 ms to the pool timeout, as /metrics has
# them), read when the process starts counting: in a worker, after the conf set the timeout.
_wait_bounds: tuple[float, ...] = ()
_wait_buckets: dict[str, list[int]] = {}
_counted: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()
_zero_waits: weakref.WeakKeyDictionary[ConnectionPool, float] = weakref.WeakKeyDictionary()  # already in bucket 0
_tracking_pid = 0


def _track_waits() -> None:
    global _tracking_pid, _wait_bounds
    if _tracking_pid != os.getpid():  # once per process: a forked child counts its own pools' waits from zero
        _tracking_pid = os.getpid()
        _wait_bounds = wait_buckets()
        _wait_buckets.clear()
        _zero_waits.clear()
        unsubscribe_pools(_count_waits)  # inherited from the parent, if it counted too
        subscribe_pools(_count_waits)


def _count_waits(pool: ConnectionPool) -> None:
    if pool in _counted:
        return
    _counted.add(pool)
    name = pool.name
    bounds = _wait_bounds

    def waited(seconds: float, granted: bool) -> None:
        counts = _wait_buckets.setdefault(name, [0] * (len(bounds) + 1))
        index = 0
        while index < len(bounds) and seconds > bounds[index]:
            index += 1
        counts[index] += 1

    pool.wait_observers.append(waited)


def _count_zero_waits(pool: ConnectionPool, figures: dict[str, float | int]) -> None:
    """The checkouts that found a slot free since the last snapshot, into the first bucket: the pool counts them
    (`immediate`) instead of calling the observer above."""
    immediate = figures[IMMEDIATE]
    counts = _wait_buckets.setdefault(pool.name, [0] * (len(_wait_bounds) + 1))
    counts[0] += max(0, int(immediate - _zero_waits.get(pool, 0)))  # a pool that counts afresh adds nothing here
    _zero_waits[pool] = immediate


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Readers never see half a file: write beside it, then rename over it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None  # a stray file holding a list or a number is no snapshot


class StatsDir:
    """The directory the workers of one gunicorn share."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def from_env(cls) -> StatsDir | None:
        path = os.environ.get(ENV_DIR)
        return cls(path) if path else None

    def clear(self) -> None:
        """At start, in the arbiter: forget the workers of a previous run (only the kit's own files are removed)."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for pattern in ("worker-*.json", "server-count.*", ".*.tmp"):
            for leftover in self.path.glob(pattern):
                leftover.unlink(missing_ok=True)

    def publish(self, snapshot: dict[str, Any]) -> None:
        _write_json(self.path / _SNAPSHOT.format(pid=snapshot["pid"]), snapshot)

    def forget(self, pid: int) -> None:
        (self.path / _SNAPSHOT.format(pid=pid)).unlink(missing_ok=True)

    def snapshots(self) -> list[dict[str, Any]]:
        """The snapshots of workers still alive (a worker killed before the arbiter reaped it is left out)."""
        found = []
        for path in self.path.glob("worker-*.json"):
            snapshot = _read_json(path)
            if snapshot and isinstance(snapshot.get("pid"), int) and _pid_alive(snapshot["pid"]):
                found.append(snapshot)
        return found

    def watch(self) -> None:
        """Ask for the server's connection count for the next WATCH_SECONDS."""
        _write_json(self.path / _WATCH, {"at": _now()})

    def watched(self) -> bool:
        asked = _read_json(self.path / _WATCH)
        return asked is not None and _now() - float(asked.get("at", 0)) < WATCH_SECONDS

    def write_server_count(self, reading: dict[str, Any]) -> None:
        _write_json(self.path / _SERVER, {**reading, "at": _now(), "pid": os.getpid()})

    def server_count(self) -> dict[str, Any] | None:
        reading = _read_json(self.path / _SERVER)
        if not reading or _now() - float(reading.get("at", 0)) > FRESH_SECONDS:
            return None
        return reading


def make_private_dir() -> str:
    """A fresh directory only this user can read, removed when the process that made it exits."""
    path = tempfile.mkdtemp(prefix="pool-stats-")
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # forked workers run atexit handlers too
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


class ServerCounter:
    """Counts the app user's connections on the server while someone watches, in at most one worker at a time."""

    def __init__(self, directory: StatsDir, connect_kwargs: dict[str, Any] | None, why_not: str = "") -> None:
        self.directory = directory
        self.connect_kwargs = connect_kwargs
        self.why_not = why_not or "no database to count on"
        self._lock_fd: int | None = None
        self._conn: Any = None

    def tick(self) -> None:
        if not self.directory.watched():
            self.release()
            return
        if self._lock_fd is None and not self._elect():
            return
        if self.connect_kwargs is None:
            self.directory.write_server_count({"error": self.why_not})
            return
        import pymysql

        from .budget import connect_monitor, read_tier

        user = self.connect_kwargs["user"]
        where = self.connect_kwargs.get("unix_socket") or \
            f"{self.connect_kwargs.get('host')}:{self.connect_kwargs.get('port', 3306)}"
        try:
            if self._conn is None:
                self._conn = connect_monitor(self.connect_kwargs)
            with self._conn.cursor() as cursor:
                tier = read_tier(cursor, user)
        except pymysql.err.MySQLError as exc:
            self._close_connection()
            code = exc.args[0] if exc.args else "?"
            self.directory.write_server_count({"error": f"cannot count on {where} as {user!r}: error {code}",
                                               "user": user, "where": where})
            return
        # This host's count is what its budget (its workers' pools) bounds; with other app hosts on the server, the
        # tier is shown beside it (the monitor connects from this host's address, bind_address included).
        reading: dict[str, Any] = {"connections": tier.counts.get(tier.here, 0), "user": user, "where": where}
        if tier.others:
            reading.update(host=tier.here, tier=dict(sorted(tier.counts.items())), tier_total=tier.total)
        self.directory.write_server_count(reading)

    def _elect(self) -> bool:
        fd = os.open(self.directory.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False  # another worker counts
        self._lock_fd = fd
        return True

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a dead connection has nothing left to close
                pass

    def release(self) -> None:
        self._close_connection()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock: another worker may count


def start_publishing(directory: StatsDir, counter: ServerCounter) -> Any:
    """In a worker: publish this worker's snapshot now, then every PUBLISH_INTERVAL, and count while watched. Runs
    in a greenlet under gevent (the count's socket I/O yields), a daemon thread otherwise."""
    directory.publish(this_process())
    reported: set[str] = set()

    def loop() -> None:
        while True:
            time.sleep(PUBLISH_INTERVAL)
            try:
                directory.publish(this_process())
                counter.tick()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a full disk or a vanished directory
                if str(exc) not in reported:  # once per distinct problem, not once a second
                    reported.add(str(exc))
                    log.warning("pool: cannot share this worker's pool figures in %s: %s", directory.path, exc)

    atexit.register(counter.release)
    return start_background(loop, "pool-workerstats")


def add_up(snapshots: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per pool name, the figures of every worker added up as the stats table's `combine` says (a maximum for the
    oldest wait)."""
    totals: dict[str, dict[str, float]] = {}
    for snapshot in snapshots:
        for name, stats in snapshot.get("pools", {}).items():
            total = totals.setdefault(name, {})
            for key, value in stats.items():
                combine = _COMBINE.get(key, "sum")
                if combine == "none" or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if combine == "max":
                    total[key] = max(total.get(key, 0), value)
                else:  # a sum, and a cap too: every worker's cap added up is the budget
                    total[key] = round(total.get(key, 0) + value, 3)
    return totals


def add_up_servers(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per server budget, over every worker: budget, open and waiting added up, and each pool's open connections (its
    share of the server)."""
    servers: dict[str, dict[str, Any]] = {}
    for snapshot in workers:
        for one in snapshot.get("servers", []):
            total = servers.setdefault(one["server"], {"server": one["server"], "server_size": 0, "open": 0,
                                                       "waiting": 0, "workers": 0, "pools": {}})
            total["workers"] += 1
            for key in ("server_size", "open", "waiting"):
                total[key] += one[key]
            for name, count in one["pools"].items():
                total["pools"][name] = total["pools"].get(name, 0) + count
    return list(servers.values())


def overview(directory: StatsDir | None, *, watch: bool = False) -> dict[str, Any]:
    """What `/-/pool` and the status page show: every live worker (this one read now, the others from their last
    snapshot, with its age), the figures added up per pool, the budget (every pool's size added up, and twice that
    while a SIGHUP reload runs old and new workers side by side), and, when `watch`, the server's count."""
    here = this_process()
    others = [s for s in directory.snapshots() if s["pid"] != here["pid"]] if directory else []
    workers = sorted([here, *others], key=lambda s: s["pid"])
    now = _now()
    totals = add_up(workers)
    # Each worker's cap (server budgets counted once, not per pool); a snapshot of an older version has only sizes.
    budget = int(sum(s["cap"] if "cap" in s else sum(p.get(SIZE, 0) for p in s["pools"].values()) for s in workers))
    if directory is None:
        server: dict[str, Any] | None = {"error": f"{ENV_DIR} is not set: this process cannot see the other workers "
                                                  f"nor count the server's connections (serve with gunicorn.conf.py)"}
    else:
        if watch:
            directory.watch()
        server = directory.server_count()
        if server is not None:
            server["age_s"] = round(max(0.0, now - server.pop("at")), 1)
        elif watch:
            server = {"pending": True}
    return {
        "workers": [{"pid": s["pid"], "age_s": round(max(0.0, now - s["at"]), 1), "pools": s["pools"],
                     "servers": s.get("servers", []), "wait_buckets": s.get("wait_buckets", {})} for s in workers],
        "servers": add_up_servers(workers),
        "wait_bounds": list(_wait_bounds),
        "total": totals,
        "budget": {"workers": len(workers), "connections": budget, "during_reload": 2 * budget},
        "server": server,
    }

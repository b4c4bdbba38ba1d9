"""Does the deployment's worst case fit the server's connection limits?

The worst case is hosts x workers x what one worker may hold on the server, doubled while a SIGHUP reload runs the old
and the new workers side by side (for up to graceful_timeout), plus a reserve for everything else that connects
(admin, migrations, cron). What one worker may hold is server_size when set (one budget for every pool to that server),
else pool size x the pools it has there (aliases, tenants, isolation levels: each counts its size on its own).

The host count a user types cannot see a tier that grows (replicas, an autoscaler's pods), so the check also reads the
tier as the server sees it: the app user's connections grouped by client address (PROCESSLIST.HOST), this host being
the address the check's own connection comes from. Each other host is counted at least at this host's share (the
replicas of one deployment), or at what it holds now if more. Without the PROCESS privilege the server lists only the
threads of the account the check logged in as, so app hosts with accounts of their own are invisible: the check reads
which account it is and whether it has PROCESS, and says what it counted (Visibility).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

import pymysql


@dataclass(frozen=True)
class Visibility:
    """Whose threads the counting connection sees in PROCESSLIST: every account's with the PROCESS privilege (SUPER
    is not enough on MariaDB), else only those of the account it logged in as. The tier is counted by user name, so
    with PROCESS that is every account of the user."""

    account: str  # CURRENT_USER(): 'app'@'10.0.0.5', 'app'@'%'
    process: bool | None  # None: its grants could not be read

    @property
    def user(self) -> str:
        return self.account.rpartition("@")[0].strip("'")

    @property
    def shared(self) -> bool:
        """The account's host is a pattern ('%', '10.0.%', a netmask), which every app host may log in as."""
        host = self.account.rpartition("@")[2]
        return any(c in host for c in "%_/")

    @property
    def blind(self) -> bool:
        """Sure to miss the other app hosts: an account of this host alone, without PROCESS."""
        return self.process is False and not self.shared

    def counted(self) -> str:
        """Whose threads the count holds, and what to change when that is not the whole tier."""
        if self.process:
            return f"every account of user {self.user!r} ({self.account} has PROCESS)"
        if self.process is None:
            return (f"the threads account {self.account} may see (its grants are unreadable: without PROCESS, its "
                    f"own only)")
        if self.shared:
            return (f"the threads of account {self.account} only (no PROCESS privilege): app hosts that log in as "
                    f"another account are not in it; grant PROCESS to see them")
        return (f"the threads of account {self.account} only (no PROCESS privilege), which no other host logs in "
                f"as: grant PROCESS, or use one account for every app host, to see the tier")


def _grants_process(grant: str) -> bool:
    """Does one line of SHOW GRANTS give PROCESS (`GRANT PROCESS, RELOAD ON *.* TO ...`, `GRANT ALL PRIVILEGES ON *.*
    ...`)? The privileges of an enabled role are listed too, under the role's name."""
    found = re.match(r"GRANT (.+?) ON \*\.\* TO ", grant)
    privileges = {p.strip().upper() for p in found.group(1).split(",")} if found else set()
    return bool(privileges & {"PROCESS", "ALL PRIVILEGES", "ALL"})


def read_visibility(cursor: Any) -> Visibility:
    """The account the connection logged in as, and whether it has PROCESS. SHOW GRANTS rather than
    information_schema.USER_PRIVILEGES, which leaves out what a role grants."""
    cursor.execute("SELECT CURRENT_USER()")
    user, _, host = str(cursor.fetchone()[0]).rpartition("@")
    account = f"'{user}'@'{host}'"
    try:
        cursor.execute("SHOW GRANTS")
    except pymysql.err.MySQLError:
        # A proxy may refuse it; the count still stands, and the line says what is unknown.
        return Visibility(account, None)
    return Visibility(account, any(_grants_process(str(row[0])) for row in cursor.fetchall()))


@dataclass(frozen=True)
class Tier:
    """The app user's connections on one server by client address, as the server lists them (monitors and the
    counting connection left out)."""

    here: str  # this host's address: where the counting connection comes from, as the server sees it
    counts: Mapping[str, int] = field(default_factory=dict)  # address -> connections; this host's too, if any
    visibility: Visibility | None = None  # whose threads were counted (None: not read)
    databases: Mapping[str, int] = field(default_factory=dict)  # PROCESSLIST.DB -> connections ("" for none)

    @property
    def others(self) -> dict[str, int]:
        return {address: n for address, n in sorted(self.counts.items()) if address != self.here}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        """`127.0.0.2: 6, 127.0.0.3: 5` (other hosts, by address), or `none`."""
        return ", ".join(f"{address}: {n}" for address, n in self.others.items()) or "none"

    def line(self) -> str:
        """The tier in one line, this host first."""
        hosts = len(self.others) + 1
        return (f"{hosts} app host(s): this host {self.here or '?'}: {self.counts.get(self.here, 0)}"
                + "".join(f", {address}: {n}" for address, n in self.others.items())
                + (f"; counted {self.visibility.counted()}" if self.visibility else ""))


def client_address(host: str) -> str:
    """PROCESSLIST.HOST without the client's port (`127.0.0.2:51234` -> `127.0.0.2`; `localhost` for a socket)."""
    address, sep, port = host.rpartition(":")
    return address if sep and port.isdigit() else host


def read_tier(cursor: Any, user: str) -> Tier:
    """The tier as this server sees it: `user`'s connections by client address, without monitors and without the
    counting connection, whose own address is `here`; and the same connections by current database (each alias's,
    or tenant's, share of the server). Without the PROCESS privilege only the threads of the connection's own account
    are listed: see read_visibility."""
    cursor.execute(
        "SELECT HOST, DB, ID = CONNECTION_ID() FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID() "
        "OR (USER = %s AND COALESCE(DB, '') <> %s)", (user, MONITOR_DATABASE)
    )
    here = ""
    counts: dict[str, int] = {}
    databases: dict[str, int] = {}
    for host, database, own in cursor.fetchall():
        address = client_address(str(host or ""))
        if own:
            here = address
        else:
            counts[address] = counts.get(address, 0) + 1
            databases[str(database or "")] = databases.get(str(database or ""), 0) + 1
    return Tier(here, counts, databases=databases)


@dataclass(frozen=True)
class Budget:
    hosts: int
    workers: int
    pool_size: int
    reload_overlap: bool
    reserve: int
    max_connections: int
    max_user_connections: int  # 0: no per-user limit
    connected_now: int
    server: str = ""  # which server of a host list ("" for a single one)
    tier: Tier | None = None  # the app hosts as the server lists them (None: not read)
    server_size: int | None = None  # one worker's budget on the server, shared by its pools (None: each pool alone)
    aliases: int = 1  # pools per worker to the server, each up to pool_size; counted only without server_size

    @property
    def per_worker(self) -> int:
        """The most one worker holds on the server: server_size, else each of its pools there at its size."""
        return self.server_size if self.server_size is not None else self.pool_size * self.aliases

    @property
    def share(self) -> int:
        """This host's worst case: workers x per worker, x2 during a reload."""
        return self.workers * self.per_worker * (2 if self.reload_overlap else 1)

    @property
    def tier_needed(self) -> int:
        """What the tier may hold with this host at its full share, plus the reserve: each other host at this host's
        share or what it holds now if more (replicas of one deployment); this host its share, or what the server
        already lists from its address if more (a worker of ours at TTIN, an old instance still draining)."""
        if self.tier is None:
            return 0
        others = sum(max(n, self.share) for n in self.tier.others.values())
        return others + max(self.tier.counts.get(self.tier.here, 0), self.share) + self.reserve

    @property
    def app_peak(self) -> int:
        return self.hosts * self.share

    @property
    def needed(self) -> int:
        return self.app_peak + self.reserve

    @property
    def lower(self) -> str:
        """What to lower for fewer connections: the setting that caps a worker on the server."""
        if self.server_size is not None:
            return "workers or POOL_SERVER_SIZE (server_size)"
        if self.aliases > 1:
            return f"workers or POOL_SIZE (or bound the {self.aliases} pools together with POOL_SERVER_SIZE)"
        return "workers or POOL_SIZE"

    @property
    def problems(self) -> list[str]:
        found = []
        where = f"server {self.server}: " if self.server else ""
        if self.needed > self.max_connections:
            found.append(
                f"{where}the app may open {self.app_peak} connections ({self.formula}) plus a reserve of "
                f"{self.reserve}: {self.needed} > the server's max_connections={self.max_connections}. Lower "
                f"{self.lower}, or raise max_connections on the server"
            )
        tier = self.tier
        if tier is not None and (tier.others or tier.counts.get(tier.here, 0) > self.share) \
                and self.tier_needed > self.max_connections:
            # Only with other hosts in sight (or more than our share from here): alone, the arithmetic above says it.
            found.append(
                f"{where}no room for this host ({tier.here or '?'}) in the tier: the server lists "
                f"{len(tier.others)} other app host(s) ({tier.describe()}); each at least at this host's share of "
                f"{self.share} ({self._formula(with_hosts=False)}), the tier needs {self.tier_needed - self.reserve} "
                f"plus a reserve of {self.reserve}: {self.tier_needed} > the server's max_connections="
                f"{self.max_connections}. Raise max_connections, lower {self.lower}, or keep the tier smaller"
            )
        if self.max_user_connections and self.app_peak > self.max_user_connections:
            found.append(
                f"{where}the app may open {self.app_peak} connections ({self.formula}) > max_user_connections="
                f"{self.max_user_connections} for its user. Lower {self.lower}, or raise the user's limit"
            )
        return found

    @property
    def formula(self) -> str:
        return self._formula(with_hosts=True)

    def _formula(self, *, with_hosts: bool) -> str:
        parts = [f"{self.hosts} hosts"] if with_hosts and self.hosts != 1 else []
        parts.append(f"{self.workers} workers")
        if self.server_size is not None:
            parts.append(f"server_size {self.server_size}")
        else:
            parts.append(f"pool {self.pool_size}")
            if self.aliases != 1:
                parts.append(f"{self.aliases} aliases")
        if self.reload_overlap:
            parts.append("2 during a SIGHUP reload")
        return " x ".join(parts)

    def per_alias(self) -> str:
        """What one alias (one pool) of a worker may hold, within the worker's budget on the server."""
        if self.pool_size <= self.per_worker:
            return f"up to its size {self.pool_size} of the server budget {self.per_worker}"
        return f"up to the server budget {self.per_worker} (its size {self.pool_size} is more)"

    def per_worker_line(self) -> str:
        """How a worker's count on the server was reckoned, and what bounds it, in one line."""
        if self.server_size is not None:
            return (f"per worker: server budget {self.server_size} (server_size) shared by its pools, each up to "
                    f"size {self.pool_size}")
        if self.aliases == 1:
            return (f"per worker: pool size {self.pool_size}, counted as one pool per worker on the server; several "
                    f"aliases or tenants to one server hold their size each: set server_size to bound them together")
        return (f"per worker: {self.aliases} pools on the server at size {self.pool_size} each, {self.per_worker}; "
                f"set server_size to bound them together")

    def table(self) -> str:
        if self.server_size is not None:
            per_worker = f"{self.per_worker} (server_size, shared by its pools)"
        else:
            per_worker = f"{self.per_worker} ({self.aliases} alias(es) x pool {self.pool_size}; no server_size)"
        rows: list[tuple[str, object]] = [
            ("hosts", self.hosts), ("workers per host", self.workers), ("pool size (each alias)", self.pool_size),
        ]
        if self.server_size is None:
            rows.append(("aliases per worker on the server", self.aliases))
        rows += [
            ("server_size", self.server_size if self.server_size is not None else "none"),
            ("per worker on the server", per_worker), ("each alias", self.per_alias()),
            ("reload overlap (x2)", "yes" if self.reload_overlap else "no"), ("app peak", self.app_peak),
            ("reserve", self.reserve), ("needed", self.needed), ("server max_connections", self.max_connections),
            ("max_user_connections", self.max_user_connections or "none"),
            ("connected now (all users)", self.connected_now),
        ]
        if self.tier is not None:
            tier = self.tier
            rows += [("app hosts the server lists", len(tier.others) + (1 if tier.counts.get(tier.here) else 0)),
                     (f"  this host {tier.here or '?'}", tier.counts.get(tier.here, 0))]
            rows += [(f"  {address}", n) for address, n in tier.others.items()]
            if tier.visibility is not None:
                rows += [("counted", tier.visibility.counted())]
            rows += [(f"needed by the tier with this host (each >= {self.share})", self.tier_needed)]
        rows.append(("verdict", "OVER BUDGET" if self.problems else "fits"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# Monitors (the locust gate, the status page's counter) log in as the app's user, the only account they can count
# with, and make this their current database, which no app connection uses: every count leaves them out, so watching
# the app never changes its count.
MONITOR_DATABASE = "information_schema"


def plain_connect_kwargs(connect_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """PyMySQL arguments for the kit's own connections (checks, monitors): the URL's ?options are the app's, except
    bind_address, which must be kept so that they come from this host's address as the app's connections do."""
    kwargs = {k: v for k, v in connect_kwargs.items() if k != "options"}
    bind_address = (connect_kwargs.get("options") or {}).get("bind_address")
    if bind_address:
        kwargs.setdefault("bind_address", bind_address)
    return kwargs


def connect_monitor(connect_kwargs: dict[str, Any]) -> pymysql.connections.Connection:
    """A connection for counting, recognisable by its current database (MONITOR_DATABASE)."""
    kwargs = plain_connect_kwargs(connect_kwargs)
    return pymysql.connect(**{**kwargs, "database": MONITOR_DATABASE}, autocommit=True, connect_timeout=5,
                           read_timeout=10, write_timeout=10)


def count_app_connections(cursor: Any, user: str) -> int:
    """The user's connections on the server, without monitors (the counting one included, whichever database it
    uses). Without the PROCESS privilege a user sees exactly its own threads, which is what is wanted here."""
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s AND ID <> CONNECTION_ID() "
        "AND COALESCE(DB, '') <> %s", (user, MONITOR_DATABASE)
    )
    return int(cursor.fetchone()[0])


class ConfSizes(NamedTuple):
    workers: int
    pool_size: int
    server_size: int | None  # None: not set, each pool counts alone


def read_gunicorn_conf(path: str) -> ConfSizes:
    """Workers, pool size and server_size as gunicorn would see them from this conf, with this process's
    environment."""
    import runpy

    conf = runpy.run_path(path)
    pool = conf.get("pool")
    if pool is None or not hasattr(pool, "size"):
        raise ValueError(f"{path} declares no pool (pool = configure_pool(...)); give --workers and --pool-size")
    server_size = getattr(pool, "server_size", None)
    return ConfSizes(int(conf.get("workers", 1)), int(pool.size), None if server_size is None else int(server_size))


def read_server_limits(connect_kwargs: dict[str, Any], timeout: float = 5) -> tuple[int, int, int, Tier]:
    """(max_connections, max_user_connections as seen by this user, Threads_connected, the tier)."""
    kwargs = plain_connect_kwargs(connect_kwargs)
    kwargs.setdefault("connect_timeout", timeout)
    kwargs.setdefault("read_timeout", timeout)
    kwargs.setdefault("write_timeout", timeout)
    conn = pymysql.connect(**kwargs)  # into the app's database: that it exists is part of the check
    try:
        # Then a monitor: a host's check, at start or TTIN, never shows in another's count (nor the locust gate's).
        conn.select_db(MONITOR_DATABASE)
        with conn.cursor() as cur:
            # The session value of max_user_connections is the account's own limit when it has one.
            cur.execute("SELECT @@GLOBAL.max_connections, @@SESSION.max_user_connections")
            max_connections, max_user = cur.fetchone()
            cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
            connected = int(cur.fetchone()[1])
            tier = replace(read_tier(cur, str(kwargs.get("user", ""))), visibility=read_visibility(cur))
    finally:
        conn.close()
    return int(max_connections), max(int(max_user), 0), connected, tier


def check(connect_kwargs: dict[str, Any], *, workers: int, pool_size: int, hosts: int = 1,
          reload_overlap: bool = True, reserve: int = 10, server_size: int | None = None, aliases: int = 1) -> Budget:
    """The budget of the first server that answers (see check_each for a host list)."""
    budgets, failures = check_each(connect_kwargs, workers=workers, pool_size=pool_size, hosts=hosts,
                                   reload_overlap=reload_overlap, reserve=reserve, server_size=server_size,
                                   aliases=aliases)
    if not budgets:
        raise failures[0][1]
    return budgets[0]


def check_each(connect_kwargs: dict[str, Any], *, workers: int, pool_size: int, hosts: int = 1,
               reload_overlap: bool = True, reserve: int = 10, timeout: float = 5, server_size: int | None = None,
               aliases: int = 1) -> tuple[list[Budget], list[tuple[str, Exception]]]:
    """One budget per server of the URL's host list, and the servers that did not answer. With failover, any server
    may end up holding every connection of the app, so each must fit the whole budget on its own."""
    from .hosts import HostList

    servers = HostList.from_connect_kwargs(connect_kwargs)
    if connect_kwargs.get("unix_socket") or len(servers) == 1:
        max_connections, max_user, connected, tier = read_server_limits(connect_kwargs, timeout)
        return [Budget(hosts, workers, pool_size, reload_overlap, reserve, max_connections, max_user, connected,
                       tier=tier, server_size=server_size, aliases=aliases)], []
    budgets: list[Budget] = []
    failures: list[tuple[str, Exception]] = []
    for host, port in servers:
        label = f"{host}:{port}"
        try:
            max_connections, max_user, connected, tier = read_server_limits(
                {**connect_kwargs, "host": host, "port": port}, timeout)
        except pymysql.err.MySQLError as exc:
            failures.append((label, exc))
            continue
        budgets.append(Budget(hosts, workers, pool_size, reload_overlap, reserve, max_connections, max_user,
                              connected, server=label, tier=tier, server_size=server_size, aliases=aliases))
    return budgets, failures


# -- the policy gunicorn's hooks apply: at start, and when TTIN adds workers ------------------------------------------


class Refusal(Exception):
    """The deployment must not start: the message, one line, says why and what to change."""


class Log(Protocol):
    def info(self, msg: str, *args: Any) -> None: ...

    def warning(self, msg: str, *args: Any) -> None: ...


@dataclass(frozen=True)
class StartupBudget:
    """What the start-up check found and was asked, kept for TTIN's check."""

    results: list[Budget]
    strict: bool
    connect_kwargs: dict[str, Any]
    hosts: int
    reserve: int
    pool_size: int
    server_size: int | None = None


# TTIN's check runs in the arbiter's main loop, between its other duties: the tier is read again (it may have grown
# since the start), with timeouts short enough that a server that does not answer delays the arbiter little.
TTIN_CHECK_TIMEOUT = 2.0


def check_at_start(log: Log, database_url: str, *, workers: int, pool_size: int, strict: bool, reserve: int,
                   hosts: int = 1, start_without_database: bool = False,
                   server_size: int | None = None) -> StartupBudget | None:
    """In this order (raises Refusal at the first that fails):

    1. DATABASE_URL must parse: a malformed one never works.
    2. The database must answer (credentials, database name, reachable), unless `start_without_database` (for a
       database that comes up later): then a warning, and each pool logs failed checkouts (rate-limited).
    3. The connection budget: workers x server_size, or without it workers x pool size (the Django aliases are not
       known in the arbiter: one pool per worker on the server), x2 during a SIGHUP reload, + reserve against the
       server's limits. Warns, or refuses in strict mode. gunicorn runs both sets of workers for up to
       graceful_timeout during a reload; USR2 upgrades (two arbiters) would double it again and are not counted.
    4. The tier, as each server lists it: the app user's connections by client address. With other app hosts in
       sight, this host's full share must still fit beside theirs (Budget.tier_needed); warns, or refuses in
       strict mode, in one line naming the other hosts and their counts.
    """
    from .dburl import parse_database_url
    from .errors import ConfigError

    try:
        kwargs = parse_database_url(database_url)
    except ConfigError as exc:
        raise Refusal(f"refusing to start: {exc}") from None
    try:
        results, unreachable = check_each(kwargs, workers=workers, pool_size=pool_size, hosts=hosts, reserve=reserve,
                                          server_size=server_size)
    except pymysql.err.MySQLError as exc:
        results, unreachable = [], [("", exc)]
    if not results:
        cause = describe_connect_failure(unreachable[0][1], kwargs)
        if not start_without_database:
            raise Refusal(f"refusing to start: {cause}. Fix DATABASE_URL or the server, or set "
                          f"POOL_START_WITHOUT_DATABASE=1 to serve anyway (requests fail until the database answers)")
        log.warning("pool: starting without the database (POOL_START_WITHOUT_DATABASE=1): %s; connection budget "
                    "not checked", cause)
        return None
    for label, error in unreachable:
        # A failover list may start with a node down; the pool skips it until it answers.
        log.warning("pool: host %s of DATABASE_URL does not answer at start (%s); its budget is not checked", label,
                    describe_connect_failure(error, {**kwargs, "host": label, "port": ""}))
    log.info("connection budget: %s", results[0].per_worker_line())
    for result in results:
        if result.tier is not None:
            _say_tier(log, result.tier)("connection budget: the tier%s as the server lists it: %s", _on(result),
                                        result.tier.line())
        for problem in result.problems:
            if strict:
                raise Refusal(f"refusing to start (POOL_BUDGET_STRICT=1): {problem}")
            log.warning("connection budget: %s", problem)
        if not result.problems:
            log.info("connection budget fits%s: %d needed (%s + reserve %d)%s of max_connections=%d", _on(result),
                     result.needed, result.formula, result.reserve, _tier_needed(result), result.max_connections)
    return StartupBudget(results, strict, kwargs, hosts, reserve, pool_size, server_size)


def check_growth(log: Log, start: StartupBudget, new_workers: int) -> str | None:
    """TTIN: the budget for `new_workers`, the tier read anew (bounded by TTIN_CHECK_TIMEOUT; the limits read at start
    when the server does not answer). Returns the problem that strict mode refuses the growth for, else None (the
    problems are then warnings)."""
    try:
        now, unreachable = check_each(start.connect_kwargs, workers=new_workers, pool_size=start.pool_size,
                                      hosts=start.hosts, reserve=start.reserve, timeout=TTIN_CHECK_TIMEOUT,
                                      server_size=start.server_size)
    except (pymysql.err.MySQLError, OSError) as exc:
        now, unreachable = [], [("", exc)]
    if not now:
        log.warning("pool: cannot read the tier for TTIN (%s); checking %d workers against the limits read at start",
                    unreachable[0][1] if unreachable else "no server", new_workers)
        now = [replace(result, workers=new_workers, tier=None) for result in start.results]
    for result in now:
        if result.tier is not None:
            _say_tier(log, result.tier)("pool: TTIN to %d workers: the tier%s as the server lists it: %s", new_workers,
                                        _on(result), result.tier.line())
    for problem in (p for result in now for p in result.problems):
        if start.strict:
            return problem
        log.warning("pool: %d workers no longer fit the connection budget: %s", new_workers, problem)
    return None


def _say_tier(log: Log, tier: Tier) -> Callable[..., None]:
    # A count that cannot include the other hosts is a check that cannot refuse them: worth a warning.
    return log.warning if tier.visibility is not None and tier.visibility.blind else log.info


def _on(result: Budget) -> str:
    return f" on {result.server}" if result.server else ""


def _tier_needed(result: Budget) -> str:
    tier = result.tier
    if tier is None or not tier.others:
        return ""
    return f"; the tier with this host at its full share {result.tier_needed}"


def describe_connect_failure(exc: BaseException, kwargs: Mapping[str, Any]) -> str:
    """One line on why the database refused, naming the part of DATABASE_URL to look at (never the password)."""
    code = exc.args[0] if getattr(exc, "args", None) and isinstance(exc.args[0], int) else None
    port = kwargs.get("port", 3306)
    where = kwargs.get("unix_socket") or (f"{kwargs.get('host')}:{port}" if port else str(kwargs.get("host")))
    if code == 1045:
        # The server names the user and the address it came from, which decide the account it was matched to.
        seen = re.search(r"for user ('[^']*'@'[^']*')", str(exc.args[1]) if len(exc.args) > 1 else "")
        return (f"the server at {where} refused user {kwargs.get('user')!r} with this password (1045 access denied"
                f"{' for ' + seen.group(1) if seen else ''})")
    if code == 1049:
        return f"the server at {where} has no database {kwargs.get('database')!r} (1049 unknown database)"
    if code == 1044:
        return f"user {kwargs.get('user')!r} may not use database {kwargs.get('database')!r} at {where} (1044)"
    if code in (2003, 2002):
        return f"no database server answers at {where} ({code} cannot connect)"
    text = exc.args[1] if code is not None and len(exc.args) > 1 else str(exc)
    return f"the database at {where} refused the connection ({code or type(exc).__name__}: {text})"


def main(argv: list[str] | None = None) -> int:
    """python -m pool budget: the connection budget table for a deployment, exit 1 when it does not fit."""
    import argparse
    import os
    import sys

    from .dburl import parse_database_url
    from .errors import ConfigError

    parser = argparse.ArgumentParser(prog="python -m pool budget", description=main.__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="the server to check (default: DATABASE_URL)")
    parser.add_argument("--conf", default="gunicorn.conf.py",
                        help="read workers, pool size and server_size from this conf (unless --workers and --pool-size "
                             "are both given)")
    parser.add_argument("--workers", type=int, help="workers per host (overrides the conf)")
    parser.add_argument("--pool-size", type=int, help="pool size, each pool's own bound (overrides the conf)")
    parser.add_argument("--server-size", type=int,
                        help="one worker's budget on the server, shared by all its pools there (POOL_SERVER_SIZE; "
                             "overrides the conf; 0: none)")
    parser.add_argument("--aliases", type=int, default=1,
                        help="pools per worker to the server (aliases, tenants, isolation levels), each counted at its "
                             "size when there is no server_size")
    parser.add_argument("--hosts", type=int, default=1, help="app hosts sharing the server")
    parser.add_argument("--reserve", type=int, default=10, help="connections kept for everything else")
    parser.add_argument("--no-reload-overlap", action="store_true",
                        help="do not double for a SIGHUP reload (only if you never reload gracefully)")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("give --database-url or set DATABASE_URL")
    if args.aliases < 1 or (args.server_size is not None and args.server_size < 0):
        parser.error("--aliases must be 1 or more, --server-size 0 (none) or more")
    workers, pool_size, server_size = args.workers, args.pool_size, args.server_size
    if workers is None or pool_size is None:
        conf = read_gunicorn_conf(args.conf)
        workers = conf.workers if workers is None else workers
        pool_size = conf.pool_size if pool_size is None else pool_size
        server_size = conf.server_size if server_size is None else server_size
    try:
        kwargs = parse_database_url(args.database_url)
    except ConfigError as bad_url:
        parser.error(str(bad_url))  # one line naming the bad part, exit 2
    try:
        results, unreachable = check_each(kwargs, workers=workers, pool_size=pool_size, hosts=args.hosts,
                                          reload_overlap=not args.no_reload_overlap, reserve=args.reserve,
                                          server_size=server_size or None, aliases=args.aliases)
    except pymysql.err.MySQLError as refused:
        results, unreachable = [], [("", refused)]
    if not results:
        # One line, as at gunicorn's start: the cause, what to fix, never the password. 2: not checked at all.
        error = unreachable[0][1]
        code = error.args[0] if error.args and isinstance(error.args[0], int) else None
        fix = ("fix the user or password in --database-url (DATABASE_URL), or the account on the server"
               if code == 1045 else "fix --database-url (DATABASE_URL) or the server")
        print(f"python -m pool budget: {describe_connect_failure(error, kwargs)}: {fix}", file=sys.stderr)
        return 2
    problems = []
    for result in results:
        if result.server:
            print(f"server {result.server}")
        print(result.table())
        problems += result.problems
    for label, exc in unreachable:
        print(f"server {label}: not answering ({exc}); not checked")
    for problem in problems:
        print(f"over budget: {problem}")
    return 1 if problems or unreachable else 0

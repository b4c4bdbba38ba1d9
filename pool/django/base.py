"""Django's MySQL backend, with connections borrowed from the process's pool instead of opened per greenlet.

    DATABASES = {"default": {"ENGINE": "pool.django", ..., "OPTIONS": {"pool": {"size": 10, "timeout": 10}}}}

Under lease="request" a connection is held from the first query of a request (or unit of work) until Django closes it
at the end, then goes back to the pool. Under lease="transaction" the wrapper's connection is the pool's per-unit
connection object: it takes a pool connection for each statement outside a transaction and for the whole of each
transaction (docs/lease.md), and Django's close at the end of the request gives back whatever it still holds. Either
way CONN_MAX_AGE has no say.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..pymysql_driver import install_as_mysqldb

# Django's MySQL backend imports MySQLdb; PyMySQL stands in for it, and users need not know.
install_as_mysqldb()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper  # noqa: E402
from django.db.backends.mysql import base as mysql_base  # noqa: E402
from django.db.backends.mysql.base import *  # noqa: E402,F403 - the backend module must expose Django's names
from django.utils.functional import cached_property  # noqa: E402

from ..abc import LeaseMode  # noqa: E402
from ..core import Borrower, ConnectionPool, Lease  # noqa: E402
from ..errors import ConfigError  # noqa: E402
from ..settings import PoolConfig, resolve_config  # noqa: E402


@dataclass
class _PoolEntry:
    params: dict[str, Any]  # the connection parameters the pool was built for
    pool: ConnectionPool
    # Django caches server facts per DatabaseWrapper, and gevent gives every request a new wrapper: kept here, they
    # are asked once per pool instead of once per request.
    server_data: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# One pool per alias and isolation level: Django keeps the isolation level on the wrapper, not in the connection
# parameters, and a wrapper built from other settings (`connection.copy()` with another OPTIONS["isolation_level"])
# must get sessions set up its way.
_pools: dict[tuple[str, str | None], _PoolEntry] = {}
_pools_lock = threading.Lock()


def pool_options_for(settings_dict: dict[str, Any], alias: str) -> PoolConfig:
    """The code's layer of this alias's pool settings: OPTIONS["pool"], validated."""
    options = settings_dict.get("OPTIONS") or {}
    raw = options.get("pool", {})
    if raw is None or raw is False:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] is {raw!r}: the pool.django engine always pools. Give a dict of "
            f"pool settings (or leave it out for the defaults), or use ENGINE 'django.db.backends.mysql' to go without."
        )
    try:
        return PoolConfig.from_mapping(raw, source=f"DATABASES[{alias!r}]['OPTIONS']['pool']")
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


def pool_config_for(settings_dict: dict[str, Any], alias: str) -> PoolConfig:
    """The settings this alias's pool runs with: OPTIONS["pool"] is the code's layer, the deployment's go over it."""
    code = pool_options_for(settings_dict, alias)
    try:
        return resolve_config(code)
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


def get_pool_entry(wrapper: DatabaseWrapper, conn_params: dict[str, Any]) -> _PoolEntry:
    # Runs on every request (each gets a new wrapper): a plain dict comparison, cheap because Django's conversion
    # tables are the same object each time.
    key = (wrapper.alias, wrapper.isolation_level)
    entry = _pools.get(key)
    if entry is not None and entry.params == conn_params:
        return entry
    with _pools_lock:
        # Settings changed under the same alias (the test runner renames NAME to test_...): retire the old pools.
        for stale in [k for k, e in _pools.items() if k[0] == wrapper.alias and e.params != conn_params]:
            _pools.pop(stale).pool.close()
        entry = _pools.get(key)
        if entry is None:
            session_init = []
            if wrapper.isolation_level:
                session_init.append(f"SET SESSION TRANSACTION ISOLATION LEVEL {wrapper.isolation_level.upper()}")
            first_of_alias = not any(k[0] == wrapper.alias for k in _pools)
            code_settings = pool_options_for(wrapper.settings_dict, wrapper.alias)
            try:
                pool = ConnectionPool(  # it resolves the deployment's layers over the code's
                    conn_params,
                    code_settings,
                    name=wrapper.alias if first_of_alias else f"{wrapper.alias}[{wrapper.isolation_level}]",
                    session_init=session_init,
                )
            except ConfigError as exc:  # POOL_*, or HOST or PORT (the driver parses them as the pool is built)
                raise ImproperlyConfigured(f"DATABASES[{wrapper.alias!r}]: {exc}") from exc
            entry = _PoolEntry(dict(conn_params), pool)
            _pools[key] = entry
    return entry


def pools() -> dict[str, ConnectionPool]:
    """The pools this process built, by alias (for stats views and hooks); for an alias used with more than one
    isolation level, the first one built."""
    found: dict[str, ConnectionPool] = {}
    for (alias, _), entry in _pools.items():
        found.setdefault(alias, entry.pool)
    return found


class DatabaseWrapper(mysql_base.DatabaseWrapper):
    _pool_lease: Lease | None = None
    _pool_borrower: Borrower | None = None  # lease="transaction"
    _pool_entry: _PoolEntry | None = None
    _pool_fresh_checkout = False  # set by get_new_connection, for the init_connection_state that connect() runs next

    @property
    def pool_holds_connection(self) -> bool:
        """Whether this wrapper holds a pool connection now (PoolMiddleware gives it back when the response is
        built)."""
        borrower = self._pool_borrower
        return self._pool_lease is not None or (borrower is not None and borrower.held is not None)

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        params.pop("pool", None)
        return params

    def _entry(self) -> _PoolEntry:
        if self._pool_entry is None:
            self._pool_entry = get_pool_entry(self, self.get_connection_params())
        return self._pool_entry

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.alias == NO_DB_ALIAS:  # short-lived admin connections (CREATE DATABASE): not worth a pool
            return super().get_new_connection(conn_params)
        self._pool_entry = entry = get_pool_entry(self, conn_params)
        if entry.pool.config.lease == LeaseMode.TRANSACTION:
            borrower = Borrower(entry.pool)
            # A connection now, as Django's own backend opens one: a database that refuses it (down, a wrong
            # password) fails connect() before Django keeps a connection object to retry with. The first statement
            # runs on it, so this costs no extra checkout.
            borrower.take()
            self._pool_borrower = borrower
            self._pool_fresh_checkout = True
            return entry.pool.borrowing(borrower)
        lease = entry.pool.acquire()
        self._pool_lease = lease
        self._pool_fresh_checkout = True
        conn = lease.connection
        if conn.encoders.get(bytes) is bytes:  # as Django's own backend does for MySQLdb compatibility
            conn.encoders.pop(bytes)
        return conn

    def init_connection_state(self) -> None:
        fresh, self._pool_fresh_checkout = self._pool_fresh_checkout, False
        if not fresh:
            # Called again on a connection in use (not by connect()), or on an admin connection: do what Django
            # does, through its cursor. Under lease="transaction" the isolation level it sets is session state,
            # which keeps the connection until the unit of work ends, as it would stay on Django's own.
            super().init_connection_state()
            return
        if self._pool_borrower is not None:
            # The isolation level is the pool's session set-up, on every connection it opens; Django would send it
            # per request, as session state that would keep a connection for the whole request.
            BaseDatabaseWrapper.init_connection_state(self)
            if self.features.is_sql_auto_is_null_enabled:  # off by default on MariaDB and MySQL
                with self.cursor() as cursor:
                    cursor.execute("SET SQL_AUTO_IS_NULL = 0")  # session state: held until the unit of work ends
            return
        # The version check runs once per alias and process. The isolation level is the pool's session_init, sent
        # once per server session rather than per checkout.
        BaseDatabaseWrapper.init_connection_state(self)
        lease = self._pool_lease
        assert lease is not None  # a fresh checkout is a lease's or a borrower's
        info = lease.info
        if self.features.is_sql_auto_is_null_enabled and not info.get("sql_auto_is_null_off"):
            with self.cursor() as cursor:
                cursor.execute("SET SQL_AUTO_IS_NULL = 0")
            info["sql_auto_is_null_off"] = True

    def _close(self) -> None:
        borrower, self._pool_borrower = self._pool_borrower, None
        if borrower is not None:
            # The unit of work is over: what it still holds goes back (rolled back, reset), and the connection
            # object refuses any further use, as a closed connection does.
            self.connection.close()
            return
        lease, self._pool_lease = self._pool_lease, None
        if lease is None:
            super()._close()
            return
        entry = self._pool_entry
        assert entry is not None
        # Inside an atomic block Django keeps self.connection: the handle now refuses any use, so nothing can
        # reach the session the next borrower gets (the transaction was rolled back on return).
        entry.pool.release(lease)

    def close_if_unusable_or_obsolete(self) -> None:
        # Back to the pool at the end of every request, whatever CONN_MAX_AGE says: the pool checks and resets it.
        if self.connection is not None:
            self.close()

    def is_usable(self) -> bool:
        try:
            self.connection.ping(reconnect=False)
        except Exception:  # noqa: BLE001 - Django's contract: never raise here
            return False
        return True

    @cached_property
    def mysql_server_data(self) -> dict[str, Any]:
        if self.alias == NO_DB_ALIAS:
            return mysql_base.DatabaseWrapper.mysql_server_data.func(self)  # type: ignore[no-any-return]
        entry = self._entry()
        if entry.server_data is None:
            entry.server_data = mysql_base.DatabaseWrapper.mysql_server_data.func(self)
        return entry.server_data

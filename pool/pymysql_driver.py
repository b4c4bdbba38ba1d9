"""The pool's driver for PyMySQL: everything the pool knows about PyMySQL and the MySQL protocol, nothing about pooling.

Every use of PyMySQL's private attributes lives in `PooledConnection`, so that a PyMySQL upgrade that moves them breaks
the tests of this one class (scripts/test runs them on the oldest and the newest supported PyMySQL).
"""

from __future__ import annotations

import select
import socket
import ssl as _ssl
import struct
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pymysql
from pymysql.constants import COMMAND, SERVER_STATUS
from pymysql.err import InterfaceError, InternalError, MySQLError

from .errors import ConnectionReturned
from .settings import PoolConfig

# Codes after which a connection must never be reused: its session is gone or its protocol state is unknown.
# 2006/2013/2055: gone away or lost; 2014: commands out of sync; 1927: MariaDB's "connection was killed";
# 1053: server shutdown in progress; 4031: MySQL 8 idle disconnect; 0: PyMySQL's own "connection closed".
DISCONNECT_CODES = frozenset({0, 1053, 1927, 2006, 2013, 2014, 2045, 2055, 4031})

COM_RESET_CONNECTION = 0x1F

# A zero-timeout readiness check must never yield to the gevent hub, so use the unpatched poll even after patching.
_monkey = sys.modules.get("gevent.monkey")
_poll = _monkey.get_original("select", "poll") if _monkey is not None else select.poll

# PyMySQL (1.2) tries TLS by default and builds a new SSLContext, loading the system CA bundle, for every connect:
# ~25 ms of CPU per connect. One context per distinct TLS configuration, shared by every connection, removes that.
_ssl_contexts: dict[tuple[tuple[str, str], ...], _ssl.SSLContext] = {}
_ssl_contexts_lock = threading.Lock()


def _is_disconnect_code(exc: BaseException, codes: frozenset[int] = DISCONNECT_CODES) -> bool:
    if isinstance(exc, (InterfaceError, InternalError)):
        return True
    if isinstance(exc, MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0] in codes
    return isinstance(exc, (OSError, EOFError))


class _Returned:
    """Stands in for the connection of a cursor whose checkout ended: any use raises, closing it stays quiet."""

    __slots__ = ()
    _result = None  # lets PyMySQL's Cursor.close() finish without touching the connection

    def __getattr__(self, name: str) -> Any:
        raise ConnectionReturned(0, _RETURNED_MESSAGE)


_RETURNED_MESSAGE = ("this connection was given back to the pool and may already serve another caller; "
                     "take a new one from the pool (cursors and connection objects must not outlive their checkout)")
_RETURNED = _Returned()


class ConnectionHandle:
    """What a caller holds for one checkout: it forwards to the connection until the checkout ends, then refuses."""

    __slots__ = ("_conn",)

    def __init__(self, conn: PooledConnection) -> None:
        object.__setattr__(self, "_conn", conn)

    def __getattr__(self, name: str) -> Any:
        conn = self._conn
        if conn is None:
            raise ConnectionReturned(0, _RETURNED_MESSAGE)
        return getattr(conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        conn = self._conn
        if conn is None:
            raise ConnectionReturned(0, _RETURNED_MESSAGE)
        setattr(conn, name, value)

    def __repr__(self) -> str:
        state = "returned" if self._conn is None else f"on {self._conn!r}"
        return f"<pooled connection handle {state}>"


class PooledConnection(pymysql.connections.Connection):  # type: ignore[misc]
    """A PyMySQL connection that knows whether a command is under way, which cursors its current checkout made, and
    how to reset or kill itself. The only place in the kit that touches PyMySQL's private attributes."""

    _pool_in_flight = False
    _pool_poller: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pool_cursors: list[weakref.ref[Any]] = []
        super().__init__(*args, **kwargs)

    def connect(self, sock: Any = None) -> None:
        super().connect(sock)
        self._pool_in_flight = False
        # Made once per connection: cheaper than a poll object per check.
        self._pool_poller = _poll()
        self._pool_poller.register(self._sock.fileno(), select.POLLIN | select.POLLPRI)

    # -- TLS ------------------------------------------------------------------------------------------------------

    def _create_ssl_ctx(self, sslp: Any) -> _ssl.SSLContext:
        if isinstance(sslp, _ssl.SSLContext):
            return sslp
        key = tuple(sorted((str(k), repr(v)) for k, v in dict(sslp).items()))
        ctx = _ssl_contexts.get(key)
        if ctx is None:
            with _ssl_contexts_lock:
                ctx = _ssl_contexts.get(key) or super()._create_ssl_ctx(sslp)
                _ssl_contexts[key] = ctx
        return ctx

    # -- a command is under way from its first byte sent to its answer read in full ---------------------------------

    def _execute_command(self, command: int, sql: Any) -> None:
        self._pool_in_flight = True
        super()._execute_command(command, sql)

    def _read_ok_packet(self) -> Any:
        try:
            ok = super()._read_ok_packet()
        except MySQLError as exc:
            # An error packet read whole leaves the protocol in step; a lost or garbled one does not.
            if not _is_disconnect_code(exc):
                self._pool_in_flight = False
            raise
        self._pool_in_flight = False
        return ok

    def _read_query_result(self, unbuffered: bool = False) -> Any:
        try:
            rows = super()._read_query_result(unbuffered=unbuffered)
        except MySQLError as exc:
            if not _is_disconnect_code(exc):
                self._pool_in_flight = False
            raise
        self._pool_in_flight = False
        return rows

    # These two read their answer without going through the readers above.
    def show_warnings(self) -> Any:
        warnings = super().show_warnings()
        self._pool_in_flight = False
        return warnings

    def set_character_set(self, charset: str, collation: str | None = None) -> None:
        super().set_character_set(charset, collation)
        self._pool_in_flight = False

    def pool_in_flight(self) -> bool:
        if self._sock is None:
            return False  # nothing can be under way on a closed connection: it is merely broken
        result = self._result
        return self._pool_in_flight or (result is not None and bool(result.unbuffered_active))

    # -- cursors of the current checkout ----------------------------------------------------------------------------

    def cursor(self, cursor: Any = None) -> Any:
        made = super().cursor(cursor)
        self._pool_cursors.append(weakref.ref(made))
        return made

    def pool_revoke_cursors(self) -> None:
        cursors, self._pool_cursors = self._pool_cursors, []
        for ref in cursors:
            cur = ref()
            if cur is not None and cur.connection is not None:
                cur.connection = _RETURNED

    # -- liveness and closing ---------------------------------------------------------------------------------------

    def pool_is_alive(self) -> bool:
        # A healthy idle connection has nothing to read: EOF (closed by the server) or stray bytes (a kill notice,
        # an unread result) both make it unusable.
        if self._sock is None:
            return False
        try:
            return not self._pool_poller.poll(0)
        except (OSError, ValueError):
            return False

    def pool_abort(self) -> None:
        sock, self._sock, self._rfile = self._sock, None, None
        if sock is None:
            return
        # shutdown() ends the TCP connection even while another greenlet or thread is blocked reading it (its read
        # then ends); close() alone would wait for the reader's file object, and PyMySQL's _force_close() raises a
        # reentrant-read RuntimeError before it closes anything.
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

    def pool_forget(self) -> None:
        rfile, sock, self._rfile, self._sock = self._rfile, self._sock, None, None
        for handle in (rfile, sock):
            try:
                if handle is not None:
                    handle.close()  # our descriptor only: no shutdown, no COM_QUIT; the parent keeps the session
            except (OSError, RuntimeError):
                pass

    # -- reset ------------------------------------------------------------------------------------------------------

    def pool_settle(self) -> None:
        """Read results the caller left unread (a CALL's trailing status, a multi-statement's later results)."""
        result = self._result
        if result is None:
            return
        if result.unbuffered_active:
            result._finish_unbuffered_query()
        while self._result is not None and self._result.has_next:
            self.next_result()
        self._result = None

    def pool_run_pipelined(self, statements: Sequence[str], reset_first: bool = False) -> None:
        """Send `statements` (after a COM_RESET_CONNECTION if asked) in one write and read every answer in order."""
        payload = b""
        if reset_first:
            payload += struct.pack("<iB", 1, COM_RESET_CONNECTION)
        for sql in statements:
            body = sql.encode(self.encoding)
            payload += struct.pack("<iB", len(body) + 1, COMMAND.COM_QUERY) + body
        if not payload:
            return
        if self._sock is None:
            raise InterfaceError(0, "connection is closed")
        self._pool_in_flight = True
        self._write_bytes(payload)
        if reset_first:
            self._next_seq_id = 1
            self._read_ok_packet()
            self._pool_in_flight = True
        for _ in statements:
            self._next_seq_id = 1
            self._read_query_result()
            self._pool_in_flight = True
        self._result = None
        self._pool_in_flight = False


class PyMySQLDriver:
    """Opens `PooledConnection`s with the pool's timeouts and replays the session set-up after a full reset.

    `init_command` and `sql_mode` are taken out of PyMySQL's hands and sent by the driver, so that a full reset (which
    clears them on the server) can apply them again. `disconnect_codes` adds server error codes after which a
    connection must be dropped (e.g. a proxy's own codes); `is_disconnect` adds a predicate of your own.
    """

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        connect_timeout: float,
        read_timeout: float,
        write_timeout: float,
        session_init: Sequence[str] = (),
        disconnect_codes: Iterable[int] = (),
        is_disconnect: Callable[[BaseException], bool] | None = None,
    ) -> None:
        kwargs = dict(connect_kwargs)
        init: list[str] = []
        sql_mode = kwargs.pop("sql_mode", None)
        if sql_mode is not None:
            init.append("SET sql_mode=" + pymysql.converters.escape_string(str(sql_mode)).join("''"))
        init_command = kwargs.pop("init_command", None)
        if init_command:
            init.append(str(init_command))
        init.extend(session_init)
        kwargs.setdefault("connect_timeout", connect_timeout)
        kwargs.setdefault("read_timeout", read_timeout)
        kwargs.setdefault("write_timeout", write_timeout)
        # Autocommit on from the start: PyMySQL's default (off) costs a SET AUTOCOMMIT now and another when the
        # application turns it back on.
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("charset", "utf8mb4")
        self._kwargs = kwargs
        self.session_init: tuple[str, ...] = tuple(init)
        self.autocommit = bool(kwargs["autocommit"])
        self._disconnect_codes = DISCONNECT_CODES | frozenset(disconnect_codes)
        self._extra_is_disconnect = is_disconnect

    @classmethod
    def for_config(cls, connect_kwargs: Mapping[str, Any], config: PoolConfig, **options: Any) -> PyMySQLDriver:
        return cls(connect_kwargs, connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
                   write_timeout=config.write_timeout, **options)

    def __repr__(self) -> str:
        return f"<PyMySQLDriver {self.target}>"

    @property
    def target(self) -> str:
        kwargs = self._kwargs
        where = kwargs.get("unix_socket") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 3306)}"
        return f"{kwargs.get('user')}@{where}/{kwargs.get('database', '')}"

    def connect(self) -> PooledConnection:
        conn = PooledConnection(**self._kwargs)
        try:
            if self.session_init:
                conn.pool_run_pipelined(self.session_init)
        except BaseException:
            conn.pool_abort()
            raise
        return conn

    def is_alive(self, conn: PooledConnection) -> bool:
        return conn.pool_is_alive()

    def in_flight(self, conn: PooledConnection) -> bool:
        return conn.pool_in_flight()

    def ping(self, conn: PooledConnection) -> None:
        conn.ping(reconnect=False)  # never reconnect: a silent reconnect would drop session state

    def reset(self, conn: PooledConnection, mode: str) -> bool:
        if not conn.open:
            raise pymysql.err.OperationalError(2013, "the connection was closed while it was lent out")
        conn.pool_settle()
        if not conn.pool_is_alive():
            raise pymysql.err.OperationalError(2013, "the server closed the connection while it was lent out")
        cleared = False
        if mode == "full":
            # One round trip: COM_RESET_CONNECTION clears user variables, temporary tables, locks, session variables
            # and the open transaction; the session set-up is sent in the same write and answered in order.
            statements = list(self.session_init)
            if not is_mariadb(conn):
                # MySQL resets the character set to the server's default; MariaDB keeps it.
                statements.insert(0, f"SET NAMES {conn.charset}" + (f" COLLATE {conn.collation}" if conn.collation else ""))
            conn.pool_run_pipelined(statements, reset_first=True)
            cleared = True
        elif in_transaction(conn):
            conn.rollback()
        if conn.get_autocommit() != self.autocommit:
            conn.autocommit(self.autocommit)
        conn.autocommit_mode = self.autocommit
        return cleared

    def close(self, conn: PooledConnection) -> None:
        try:
            if conn.open:
                conn.close()  # COM_QUIT, then the socket
        except Exception:  # noqa: BLE001 - a broken connection may fail to say goodbye
            conn.pool_abort()

    def abort(self, conn: PooledConnection) -> None:
        conn.pool_abort()

    def forget(self, conn: PooledConnection) -> None:
        conn.pool_forget()

    def is_disconnect(self, exc: BaseException) -> bool:
        if _is_disconnect_code(exc, self._disconnect_codes):
            return True
        return self._extra_is_disconnect is not None and self._extra_is_disconnect(exc)

    def server_wait_timeout(self, conn: PooledConnection) -> float | None:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@wait_timeout")
                row = cur.fetchone()
            return float(row[0]) if row else None
        except MySQLError:
            return None

    def lend(self, conn: PooledConnection) -> ConnectionHandle:
        return ConnectionHandle(conn)

    def revoke(self, conn: PooledConnection, handle: ConnectionHandle) -> None:
        object.__setattr__(handle, "_conn", None)
        conn.pool_revoke_cursors()


def install_as_mysqldb() -> None:
    """Let Django's MySQL backend import PyMySQL as MySQLdb, without a second copy of PyMySQL's modules.

    `pymysql.install_as_MySQLdb()` aliases only the package: Django's `from MySQLdb.converters import ...` then
    executes converters.py and err.py again as `MySQLdb.*`, and rebinds `pymysql.err` to the copy, whose exception
    classes PyMySQL never raises. `except pymysql.err.OperationalError` silently stops matching, and so does Django's
    error translation. Aliasing every submodule keeps one copy.
    """
    pymysql.install_as_MySQLdb()
    for name, module in list(sys.modules.items()):
        if name.startswith("pymysql."):
            sys.modules.setdefault("MySQLdb." + name[len("pymysql.") :], module)


def is_disconnect(exc: BaseException) -> bool:
    """The default classification, for code that has no driver at hand."""
    return _is_disconnect_code(exc)


def is_mariadb(conn: Any) -> bool:
    return "mariadb" in str(conn.server_version).lower()


def in_transaction(conn: Any) -> bool:
    return bool(conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)

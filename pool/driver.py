"""Everything the pool needs to know about PyMySQL and the MySQL protocol, and nothing about pooling.

The pool core calls only the functions here to connect, check, reset and drop connections, as SQLAlchemy's pool goes
through its dialect.
"""

from __future__ import annotations

import select
import ssl as _ssl
import struct
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pymysql
from pymysql.constants import COMMAND, SERVER_STATUS
from pymysql.err import InterfaceError, InternalError, MySQLError

Connection = pymysql.connections.Connection

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
_ssl_contexts: dict[tuple[tuple[str, Any], ...], _ssl.SSLContext] = {}
_ssl_contexts_lock = threading.Lock()


class _SharedContextConnection(Connection):  # type: ignore[misc]
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


class Connector:
    """Opens PyMySQL connections with the pool's timeouts and replays the session set-up after a reset.

    `init_command` and `sql_mode` are taken out of the driver's hands and sent by the connector, so that a full reset
    (which clears them on the server) can apply them again.
    """

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        connect_timeout: float,
        read_timeout: float,
        write_timeout: float,
        session_init: Sequence[str] = (),
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

    def __repr__(self) -> str:
        where = self._kwargs.get("unix_socket") or f"{self._kwargs.get('host', 'localhost')}:{self._kwargs.get('port', 3306)}"
        return f"<Connector {self._kwargs.get('user')}@{where}/{self._kwargs.get('database', '')}>"

    @property
    def target(self) -> str:
        """Where connections go, without credentials (for messages)."""
        return repr(self)[len("<Connector ") : -1]

    def connect(self) -> Connection:
        conn = _SharedContextConnection(**self._kwargs)
        try:
            if self.session_init:
                run_pipelined(conn, self.session_init)
        except BaseException:
            discard(conn)
            raise
        return conn

    def reset(self, conn: Connection, mode: str) -> None:
        """Make `conn` fit for the next user; raises on any failure, and then the connection must be discarded."""
        if mode == "full":
            # One round trip: COM_RESET_CONNECTION clears user variables, temporary tables, locks, session variables
            # and the open transaction; the session set-up is sent in the same write and answered in order.
            statements = list(self.session_init)
            if not is_mariadb(conn):
                # MySQL resets the character set to the server's default; MariaDB keeps it.
                statements.insert(0, f"SET NAMES {conn.charset}" + (f" COLLATE {conn.collation}" if conn.collation else ""))
            run_pipelined(conn, statements, reset_first=True)
        elif in_transaction(conn):
            conn.rollback()
        if conn.get_autocommit() != self.autocommit:
            conn.autocommit(self.autocommit)
        conn.autocommit_mode = self.autocommit


def run_pipelined(conn: Connection, statements: Sequence[str], reset_first: bool = False) -> None:
    """Send `statements` (after a COM_RESET_CONNECTION if asked) in one write and read every answer in order."""
    payload = b""
    if reset_first:
        payload += struct.pack("<iB", 1, COM_RESET_CONNECTION)
    for sql in statements:
        body = sql.encode(conn.encoding)
        payload += struct.pack("<iB", len(body) + 1, COMMAND.COM_QUERY) + body
    if not payload:
        return
    if conn._sock is None:
        raise pymysql.err.InterfaceError(0, "connection is closed")
    pending = conn._result
    if pending is not None and pending.unbuffered_active:
        pending._finish_unbuffered_query()
    conn._result = None
    conn._write_bytes(payload)
    if reset_first:
        conn._next_seq_id = 1
        conn._read_ok_packet()
    for _ in statements:
        conn._next_seq_id = 1
        conn._read_query_result()
    conn._result = None


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


def is_mariadb(conn: Connection) -> bool:
    return "mariadb" in str(conn.server_version).lower()


def in_transaction(conn: Connection) -> bool:
    return bool(conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)


def readiness_poller(conn: Connection) -> Any:
    """A poll object watching `conn`'s socket for readability, made once per connection (cheaper than per check)."""
    poller = _poll()
    poller.register(conn._sock.fileno(), select.POLLIN | select.POLLPRI)
    return poller


def socket_is_dead(conn: Connection, poller: Any = None) -> bool:
    """True if the server closed the connection or sent something unasked (a kill notice): found without a round trip.

    A healthy idle connection has nothing to read; anything readable (EOF or stray bytes) means it is unusable.
    """
    if conn._sock is None:
        return True
    try:
        return bool((poller or readiness_poller(conn)).poll(0))
    except (OSError, ValueError):
        return True


def ping(conn: Connection) -> None:
    conn.ping(reconnect=False)  # never reconnect: a silent reconnect would drop session state


def is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, (InterfaceError, InternalError)):
        return True
    if isinstance(exc, MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0] in DISCONNECT_CODES
    return isinstance(exc, (OSError, EOFError))


def is_open(conn: Connection) -> bool:
    return conn._sock is not None


def discard(conn: Connection) -> None:
    """Drop the socket without COM_QUIT: for dead connections and for ones inherited across fork (the parent still
    uses the session, and QUIT would end it for the parent)."""
    try:
        conn._force_close()
    except Exception:  # noqa: BLE001 - a socket that fails to close is gone either way
        pass


def close(conn: Connection) -> None:
    """Say goodbye (COM_QUIT) so the server frees the session at once, then drop the socket."""
    try:
        if conn._sock is not None:
            conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection is allowed to fail
        discard(conn)


def server_wait_timeout(conn: Connection) -> float | None:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@wait_timeout")
            row = cur.fetchone()
        return float(row[0]) if row else None
    except MySQLError:
        return None

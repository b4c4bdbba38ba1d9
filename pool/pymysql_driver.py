"""The pool's driver for PyMySQL: everything the pool knows about PyMySQL and the MySQL protocol, nothing about pooling.

`PooledConnection` is the one class that touches PyMySQL's private attributes (with the small helpers it uses), so
that a PyMySQL upgrade that moves them breaks the tests of this one class (scripts/test runs them on the oldest and the
newest supported PyMySQL). It also owns what its session goes through: the set-up, the tracking of state changes for
reset="tracked", the reset on return, the KILL of a session left running. `PyMySQLDriver` is the adapter the pool
calls (`pool.abc.Driver`): it opens connections to a host list with the pool's arguments and TLS contexts, and hands
each call on to the connection, with the `SessionPolicy` its connections share.
"""

from __future__ import annotations

import logging
import os
import re
import select
import socket
import ssl as _ssl
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

import pymysql
from pymysql.charset import charset_by_name
from pymysql.constants import CLIENT, COMMAND, SERVER_STATUS
from pymysql.err import InterfaceError, InternalError, MySQLError
from pymysql.protocol import EOFPacketWrapper

from .abc import Clock, LeaseMode, ResetMode
from .errors import ConcurrentUse, ConnectionReturned, OutOfStep
from .hosts import Host, HostBackoff, HostList
from .settings import PoolConfig
from .tracing import open_connection

try:
    from greenlet import getcurrent  # the greenlet (or a thread's main greenlet) that sends a command
except ImportError:  # without gevent's greenlet (PyMySQL's own suite runs the class in a bare environment): threads
    getcurrent = threading.current_thread  # type: ignore[assignment]  # any object per thread will do

# Codes after which a connection must never be reused: its session is gone or its protocol state is unknown.
# 2006/2013/2055: gone away or lost; 2014: commands out of sync; 1927: MariaDB's "connection was killed";
# 1053: server shutdown in progress; 4031: MySQL 8 idle disconnect; 0: PyMySQL's own "connection closed".
DISCONNECT_CODES = frozenset({0, 1053, 1927, 2006, 2013, 2014, 2045, 2055, 4031})

COM_RESET_CONNECTION = 0x1F
_ER_NO_SUCH_THREAD = 1094
# In server_status when the server, with CLIENT_SESSION_TRACK and session_track_state_change=ON, reports that the
# statement changed the session's state: in that statement's own OK packet (MariaDB 10.11: not on the EOF packets
# of later result sets, which the kit reads its status from too).
SERVER_SESSION_STATE_CHANGED = 1 << 14

# Statements that change session state the server's tracking does not report (checked on MariaDB 10.11): user variables
# assigned inside a statement (`SELECT @v := 1`, `DO @v := 1`), named locks, a one-shot `SET TRANSACTION`, procedures
# (`CALL` of one that takes a lock is not reported), table locks, HANDLERs, FLUSH ... WITH READ LOCK,
# LAST_INSERT_ID(expr), and XA transactions (a prepared one outlives its statements' transaction status). Matching
# is on the statement's text, comments included: a false alarm only costs a reset.
_UNTRACKED_STATE = (r":=|\bGET_LOCK\s*\(|\bSET\b[^;]*?\bTRANSACTION\b|\bCALL\b|\bLOCK\s+TABLES?\b|\bHANDLER\b"
                    r"|\bFLUSH\b|\bLAST_INSERT_ID\s*\(\s*[^\s)]|\bXA\b")

log = logging.getLogger("pool")

# Under lease="transaction": statements after which the next statement may read a value of theirs from the session
# (LAST_INSERT_ID(), ROW_COUNT(), FOUND_ROWS() after SQL_CALC_FOUND_ROWS): the connection stays for one more
# statement, as ProxySQL keeps a backend after an insert (docs/lease.md). Warnings count too, from the answer itself.
_LEAVES_VALUES = re.compile(r"\b(?:INSERT|REPLACE|UPDATE|DELETE|LOAD|SQL_CALC_FOUND_ROWS)\b", re.IGNORECASE)
_LEAVES_VALUES_BYTES = re.compile(_LEAVES_VALUES.pattern.encode(), re.IGNORECASE)

# A statement that creates, changes or drops what the catalogue lists: the pool reads the catalogue again at once.
_CATALOGUE_DDL = re.compile(r"\b(?:CREATE|ALTER|DROP)\b[\s\S]*?\b(?:FUNCTION|PROCEDURE|TRIGGER)\b", re.IGNORECASE)
_CATALOGUE_DDL_BYTES = re.compile(_CATALOGUE_DDL.pattern.encode(), re.IGNORECASE)
_WRITES = r"\b(?:INSERT|UPDATE|DELETE|REPLACE|LOAD)\b[\s\S]*?"

# One round trip: the stored functions and the tables with triggers the app user can see, and whether it may see
# triggers at all (information_schema.TRIGGERS lists only tables on which the user has the TRIGGER privilege).
_CATALOGUE_QUERY = (
    "SELECT 'function', ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'FUNCTION' "
    "UNION ALL SELECT 'trigger', EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
    "UNION ALL SELECT 'trigger_privilege', COUNT(*) FROM information_schema.USER_PRIVILEGES "
    "WHERE PRIVILEGE_TYPE = 'TRIGGER' "
    "UNION ALL SELECT 'trigger_privilege', COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES "
    "WHERE PRIVILEGE_TYPE = 'TRIGGER' AND TABLE_SCHEMA = {database}"
)


class Catalogue:
    """What can change session state without the server's tracking saying so, for reset="tracked": the fixed list
    of such statements, a call of any stored function, and a write to any table with a trigger (all of them count:
    a false alarm only costs a reset). Shared by a driver's connections; read when the first one tracks, again
    every `REFRESH_AFTER` seconds (on a connection being returned) and at once after the pool itself sends a
    CREATE/ALTER/DROP of a function, procedure or trigger."""

    REFRESH_AFTER = 10.0  # the bound on staleness for routines and triggers another client creates

    __slots__ = ("text", "bytes", "read_at", "stale", "functions", "trigger_tables", "complete")

    def __init__(self, rows: Sequence[tuple[Any, ...]] = (), now: float = 0.0) -> None:
        self.stale = False
        self.update(rows, now)

    def update(self, rows: Sequence[tuple[Any, ...]], now: float) -> None:
        functions = sorted({str(name) for kind, name in rows if kind == "function"})
        tables = sorted({str(name) for kind, name in rows if kind == "trigger"})
        pattern = _UNTRACKED_STATE
        if functions:
            pattern += r"|\b(?:" + "|".join(re.escape(name) for name in functions) + r")\s*\("
        pattern += "|" + _CATALOGUE_DDL.pattern
        if tables:
            pattern += r"|" + _WRITES + r"\b(?:" + "|".join(re.escape(name) for name in tables) + r")\b"
        self.text = re.compile(pattern, re.IGNORECASE)
        self.bytes = re.compile(pattern.encode(), re.IGNORECASE)
        self.functions, self.trigger_tables = functions, tables
        self.complete = any(kind == "trigger_privilege" and int(count) for kind, count in rows)
        self.read_at = now
        self.stale = False

    def due(self, now: float) -> bool:
        return self.stale or now - self.read_at >= self.REFRESH_AFTER


@dataclass(eq=False)
class SessionPolicy:
    """What one driver's connections share about their sessions: the set-up a full reset replays, what each session
    must be like when lent (autocommit, character set, database), and for reset="tracked" the catalogue and the log
    lines said once per pool."""

    target: str  # for the log lines
    session_init: tuple[str, ...]
    autocommit: bool
    charset: str
    collation: str | None
    database: str  # "" for none
    track_state: bool
    catalogue_query: str
    per_statement: bool = False  # lease="transaction": connections go back between statements
    clock: Clock = time.monotonic  # the pool's: the catalogue's age is read on it
    catalogue: Catalogue | None = None  # read at the first connect that tracks, then kept fresh on returns
    tracking_logged: bool = False
    incomplete_logged: bool = False

    def log_tracking_once(self) -> None:
        if self.tracking_logged:
            return
        self.tracking_logged = True
        if self.catalogue is not None:
            log.info("pool for %s: reset=tracked: the server reports session state changes; a connection is reset "
                     "only after a checkout that changed something (%d stored functions and %d tables with triggers "
                     "count as changes)", self.target, len(self.catalogue.functions),
                     len(self.catalogue.trigger_tables))
        else:
            log.warning("pool for %s: reset=tracked, but the server does not report session state changes (MySQL "
                        "before 5.7, MariaDB before 10.2, or a proxy that strips them): every connection is fully "
                        "reset on return", self.target)

    def log_incomplete_catalogue_once(self) -> None:
        if self.incomplete_logged:
            return
        self.incomplete_logged = True
        log.warning("pool for %s: reset=tracked, but the app user may not see triggers (no TRIGGER privilege): "
                    "every connection is fully reset on return. GRANT TRIGGER ON <database>.* to the user, or "
                    "set reset='full' to say so", self.target)


# A statement that may change the current database, which no reset puts back by itself.
_USE_TEXT = re.compile(r"\bUSE\b", re.IGNORECASE)
_USE_BYTES = re.compile(rb"\bUSE\b", re.IGNORECASE)

# One round trip on a new connection to a host list: is this a Galera node, and is it usable? A node that lost quorum
# still answers SELECT 1 but fails table queries with 1047; only wsrep_ready=ON and state 4 (Synced) will do.
_GALERA_READINESS = ("SELECT @@wsrep_on, "
                     "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                     "WHERE VARIABLE_NAME = 'WSREP_READY'), "
                     "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                     "WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE')")

_TRACKING_ON = "SET SESSION session_track_state_change = ON"

# A zero-timeout readiness check must never yield to the gevent hub, so use the unpatched poll even after patching.
_monkey = sys.modules.get("gevent.monkey")
_poll = _monkey.get_original("select", "poll") if _monkey is not None else select.poll

class TLSContexts:
    """The TLS contexts of one driver's connections: one per TLS configuration, built again when a file it was built
    from (CA, CA folder, certificate, key) changes on disk, so that a rotated certificate is read at the next connect.

    PyMySQL (1.2) tries TLS by default and builds a new SSLContext, loading the system CA bundle, for every connect:
    ~25 ms of CPU per connect. Sharing one removes that; a connection made without a driver keeps PyMySQL's way.
    """

    _FILES = ("ca", "capath", "cert", "key")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[tuple[tuple[str, str], ...], tuple[tuple[Any, ...], _ssl.SSLContext]] = {}

    def get(self, sslp: Mapping[str, Any], build: Callable[[Any], _ssl.SSLContext]) -> _ssl.SSLContext:
        key = tuple(sorted((str(k), repr(v)) for k, v in sslp.items()))
        stamps = self._stamps(sslp)
        found = self._contexts.get(key)
        if found is None or found[0] != stamps:
            with self._lock:
                found = self._contexts.get(key)
                if found is None or found[0] != stamps:
                    found = (stamps, build(sslp))
                    self._contexts[key] = found
        return found[1]

    @classmethod
    def _stamps(cls, sslp: Mapping[str, Any]) -> tuple[Any, ...]:
        stamps: list[Any] = []
        for name in cls._FILES:
            path = sslp.get(name)
            if isinstance(path, (str, os.PathLike)):
                try:
                    st = os.stat(path)
                    stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
                except OSError:
                    stamps.append(None)  # PyMySQL's own build reports the missing file
        return tuple(stamps)


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


class _StatusKeepingResult(pymysql.connections.MySQLResult):
    """PyMySQL takes the server status only from OK packets; a result set's closing EOF packet carries it too. Without
    it the status after a SELECT, or after MariaDB's INSERT ... RETURNING, is the one from before: a transaction that
    statement opened would look closed, and whatever the pool decides from the status (the rollback, the reset) would
    be wrong. Same work per row as PyMySQL's own check.

    It also tells its connection when the answer it reads has ended (`_pool_end`): for a buffered result, when the
    reader has it whole; for an unbuffered one, when its last row has been read, whoever reads it and whenever."""

    _pool_unbuffered = False
    _pool_ended = False

    def __init__(self, connection: PooledConnection) -> None:
        super().__init__(connection)
        # PyMySQL drops `connection` as soon as it has read what it reads: keep the one whose answer this is.
        self._pool_conn: PooledConnection | None = connection

    @property  # an attribute in PyMySQL
    def unbuffered_active(self) -> bool:
        return self._pool_unbuffered

    @unbuffered_active.setter
    def unbuffered_active(self, active: bool) -> None:
        was, self._pool_unbuffered = self._pool_unbuffered, active
        if was and not active:  # the last row (or a statement timeout) ended an unbuffered read
            self._pool_end()

    def _pool_end(self) -> None:
        """The answer to this result's command has been read, unless more results follow (multi-statements, CALL)."""
        conn, self._pool_conn = self._pool_conn, None
        if not self._pool_ended and conn is not None:
            self._pool_ended = True
            if not self.has_next:
                conn._pool_answer_ended()

    def _check_packet_is_eof(self, packet: Any) -> bool:
        if not packet.is_eof_packet():
            return False
        eof = EOFPacketWrapper(packet)
        self.warning_count = eof.warning_count
        self.has_next = eof.has_next
        self.server_status = eof.server_status
        conn: PooledConnection | None = self.connection  # type: ignore[assignment]  # always ours
        if conn is not None:  # an unbuffered result's end arrives after _read_query_result has returned
            conn.server_status = eof.server_status
            conn._pool_status_seen |= eof.server_status
        return True


class PooledConnection(pymysql.connections.Connection):
    """A PyMySQL connection that knows whether a command is under way, which cursors its current checkout made, and
    what its session went through: it sets the session up, tracks its changes, resets it on return, and ends the
    session of another connection left running a command. The only place in the kit that touches PyMySQL's private
    attributes."""

    # PyMySQL's own attributes that types-PyMySQL does not declare (for the type checker only).
    server_status: int
    server_capabilities: int
    server_thread_id: tuple[int, ...]
    _sock: Any
    _rfile: Any
    _result: Any
    _next_seq_id: int
    _affected_rows: int
    _write_bytes: Callable[[bytes], None]

    # In step: every command written has had its whole answer read. `_pool_pending` counts commands written whose
    # answer has not ended yet (see _StatusKeepingResult._pool_end); `_pool_issuer` is the greenlet (a thread's main
    # greenlet outside gevent) that wrote the last one; `_pool_interrupted` says a read ended in something other than
    # an answer (a killed greenlet, a garbled packet, a reentrant read), so the protocol state is unknown for good.
    _pool_pending = 0
    _pool_issuer: Any = None
    _pool_interrupted = False
    _pool_poller: Any = None
    # Session-state tracking for reset="tracked" (on while a catalogue is attached: the server reports changes on this
    # connection): what this checkout's packets said, and whether a statement did something tracking would not report.
    _pool_catalogue: Catalogue | None = None
    _pool_database_changed = False
    _pool_status_seen = 0
    _pool_untracked_change = False
    # lease="transaction": whether to look for, and whether the last statement left, a value the next may read.
    _pool_per_statement = False
    _pool_values_pinned = False

    def __init__(self, *args: Any, pool_tls_contexts: TLSContexts | None = None, **kwargs: Any) -> None:
        self._pool_cursors: list[weakref.ref[Any]] = []
        self._pool_tls_contexts = pool_tls_contexts
        super().__init__(*args, **kwargs)

    def connect(self, sock: Any = None) -> None:
        self._pool_pending, self._pool_interrupted = 0, False  # a reconnect (ping) starts a new protocol
        super().connect(sock)
        self._pool_pending, self._pool_interrupted = 0, False
        # Made once per connection: cheaper than a poll object per check.
        self._pool_poller = _poll()
        self._pool_poller.register(self._sock.fileno(), select.POLLIN | select.POLLPRI)

    # -- TLS ------------------------------------------------------------------------------------------------------

    def _create_ssl_ctx(self, sslp: Any) -> _ssl.SSLContext:
        contexts = self._pool_tls_contexts
        if contexts is None or isinstance(sslp, _ssl.SSLContext):
            return super()._create_ssl_ctx(sslp)  # type: ignore[misc, no-any-return]  # private, undeclared
        return contexts.get(sslp, super()._create_ssl_ctx)  # type: ignore[misc]

    # -- a command is under way from its first byte sent to its answer read in full ---------------------------------

    def _request_authentication(self) -> None:
        # Ask for session tracking only from a server that offers it.
        if not self.server_capabilities & CLIENT.SESSION_TRACK:
            self.client_flag &= ~CLIENT.SESSION_TRACK
        super()._request_authentication()  # type: ignore[misc]

    def _execute_command(self, command: int, sql: Any) -> None:
        current = getcurrent()
        if self._pool_pending or self._pool_interrupted:
            self._pool_check_in_step(current)
        if command == COMMAND.COM_QUERY:
            # PyMySQL sends str, bytes, or (executemany's bulk INSERT) a bytearray; anything not str is bytes-like.
            text = isinstance(sql, str)
            if (_USE_TEXT if text else _USE_BYTES).search(sql):
                self._pool_database_changed = True
            catalogue = self._pool_catalogue
            if catalogue is not None and not self._pool_untracked_change:
                if (catalogue.text if text else catalogue.bytes).search(sql):
                    self._pool_untracked_change = True
                    if (_CATALOGUE_DDL if text else _CATALOGUE_DDL_BYTES).search(sql):
                        catalogue.stale = True
        elif command == COMMAND.COM_INIT_DB:
            self._pool_database_changed = True
        if self._pool_per_statement:
            self._pool_values_pinned = command == COMMAND.COM_QUERY and bool(
                (_LEAVES_VALUES if isinstance(sql, str) else _LEAVES_VALUES_BYTES).search(sql))
        self._pool_issuer = current
        self._pool_pending += 1
        super()._execute_command(command, sql)  # type: ignore[misc]

    def _pool_check_in_step(self, current: Any) -> None:
        """Refuse a command, before anything is written, unless the connection can get back in step by itself: only
        the greenlet that wrote the command under way may go on, and only where PyMySQL will read the rest of that
        answer first (an unbuffered result left unfinished, results of a multi-statement not read yet)."""
        if self._pool_interrupted:
            raise OutOfStep(0, "an earlier read on this connection ended before its answer did (interrupted, or a "
                               "garbled packet): what the server sends next is unknown, so this connection takes no "
                               "more commands; it is closed when given back to the pool")
        if current is not self._pool_issuer:
            raise ConcurrentUse(0, "this connection is in use by another greenlet or thread of the same checkout, "
                                   "which still waits for the answer to its command; nothing was sent. Each greenlet "
                                   "or thread must take its own connection from the pool (in Django, use its own "
                                   "`connection`, not a cursor or connection handed over from another)")
        result = self._result
        if result is None or not (result.unbuffered_active or result.has_next):
            raise OutOfStep(0, "the answer to this connection's previous command was never read in full: what the "
                               "server sends next is unknown, so this connection takes no more commands; it is closed "
                               "when given back to the pool")

    def _read_ok_packet(self) -> Any:
        return self._pool_read_answer(super()._read_ok_packet, None)  # type: ignore[misc]

    def _read_query_result(self, unbuffered: bool = False) -> Any:
        # PyMySQL's own, with a result class that keeps the status of a result set's closing EOF packet.
        self._result = None
        result = _StatusKeepingResult(self)

        def read() -> Any:
            if unbuffered:
                result.init_unbuffered_query()
            else:
                result.read()
            self._result = result
            if result.server_status is not None:
                self.server_status = result.server_status  # before _pool_read_answer notes it
            return result.affected_rows

        return self._pool_read_answer(read, result)

    def _pool_read_answer(self, read: Callable[[], Any], result: _StatusKeepingResult | None) -> Any:
        """`read()` the server's answer to the command under way, noting how it ended: in full (or its first part, for
        an unbuffered result or one of several), as a whole error packet (in step too), or without an answer."""
        try:
            answer = read()
        except MySQLError as exc:
            # An error packet read whole ends the answer; a lost or garbled one leaves the connection out of step.
            if not _is_disconnect_code(exc):
                self._pool_answer_ended()
            raise
        except BaseException:
            # A gevent Timeout, a killed greenlet, a reentrant read, a value that would not decode: the rest of the
            # answer may still be on its way, and the server may still be running the command.
            self._pool_interrupted = True
            raise
        if result is None:
            self._pool_answer_ended()
        elif not result.unbuffered_active:
            result._pool_end()
            if result.warning_count and self._pool_per_statement:
                self._pool_values_pinned = True  # for SHOW WARNINGS next
        self._pool_status_seen |= self.server_status
        return answer

    def _pool_answer_ended(self) -> None:
        if self._pool_pending > 0:
            self._pool_pending -= 1

    # PyMySQL reads these two answers without its readers above: the same steps, through them.
    def show_warnings(self) -> Any:
        self._execute_command(COMMAND.COM_QUERY, "SHOW WARNINGS")
        result = _StatusKeepingResult(self)
        self._pool_read_answer(result.read, result)
        return result.rows

    def set_character_set(self, charset: str, collation: str | None = None) -> None:
        encoding = charset_by_name(charset).encoding
        collate = f" COLLATE {collation}" if collation else ""
        self._execute_command(COMMAND.COM_QUERY, f"SET NAMES {charset}{collate}")
        self._read_ok_packet()
        self.charset, self.encoding, self.collation = charset, encoding, collation
        self._pool_untracked_change = True  # read without a status we keep: count it as a change

    def autocommit(self, value: Any) -> None:
        # Django's atomic() turns autocommit off and back on through here, and the server reports each as a change of
        # session state. Autocommit is the one piece of it the return reads from the server status itself (and puts
        # back), so its own reports are no leftover: a block that ended with autocommit as it found it left nothing.
        changed_before = self._pool_status_seen & SERVER_SESSION_STATE_CHANGED
        super().autocommit(value)
        self._pool_status_seen = self._pool_status_seen & ~SERVER_SESSION_STATE_CHANGED | changed_before

    def pool_may_be_in_transaction(self) -> bool:
        # With autocommit off, a statement that failed may have opened a transaction (and kept its row locks) that no
        # status reported: only autocommit on and no IN_TRANS mean none is open.
        status = self.server_status
        return bool(status & SERVER_STATUS.SERVER_STATUS_IN_TRANS
                    or not status & SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT)

    def pool_may_release(self, policy: SessionPolicy) -> bool:
        """Under lease="transaction", between statements: whether nothing ties this connection to its borrower (see
        pool.abc.Driver.may_release). Without the server's reports of session state changes nothing can be ruled
        out, and the connection stays until the unit of work ends, as under lease="request"."""
        if self._sock is None:
            return True  # broken: the pool drops it
        return not (self._pool_pending or self._pool_interrupted or self._pool_values_pinned
                    or self._pool_catalogue is None or self.pool_session_changed() or self._pool_database_changed
                    or self.charset != policy.charset)

    def pool_session_changed(self) -> bool:
        """Whether this checkout may have left session state behind (reset="tracked")."""
        return bool(self._pool_untracked_change or self._pool_status_seen & SERVER_SESSION_STATE_CHANGED
                    or self.pool_may_be_in_transaction())

    def pool_clear_tracking(self) -> None:
        self._pool_status_seen = 0
        self._pool_untracked_change = False
        self._pool_database_changed = False
        self._pool_values_pinned = False

    def pool_in_flight(self) -> bool:
        """Not provably in step: a command's answer is still due (someone may be reading it), or a read was cut off.
        The one exception is a multi-statement's later results, left unread by the borrower: the reset reads them."""
        if self._sock is None:
            # Closed: merely broken, unless our side cut it while the server was still running a command.
            return self._pool_interrupted
        if self._pool_interrupted:
            return True
        pending = self._pool_pending
        if not pending:
            return False
        result = self._result
        return not (pending == 1 and result is not None and result.has_next and not result.unbuffered_active)

    # -- cursors of the current checkout ----------------------------------------------------------------------------

    def cursor(self, cursor: Any = None) -> Any:
        made = super().cursor(cursor)
        self._pool_cursors.append(weakref.ref(made))
        return made

    def pool_revoke(self, handle: ConnectionHandle | None) -> None:
        """End the checkout `handle` stands for (None: one lent without a handle): it, and every cursor the checkout
        made, refuse use from now on."""
        if handle is not None:
            object.__setattr__(handle, "_conn", None)
        if self._pool_cursors:
            self.pool_revoke_cursors()

    def pool_revoke_cursors(self) -> None:
        cursors, self._pool_cursors = self._pool_cursors, []
        for ref in cursors:
            cur = ref()
            if cur is not None and cur.connection is not None:
                cur.connection = _RETURNED

    # -- liveness and closing ---------------------------------------------------------------------------------------

    def pool_is_alive(self) -> bool:
        # A healthy idle connection has nothing to read: EOF (closed by the server) or stray bytes (a kill notice,
        # an unread result) both make it unusable; nor may it owe an answer (the return checks that first).
        if self._sock is None or self._pool_pending or self._pool_interrupted:
            return False
        try:
            return not self._pool_poller.poll(0)  # _pool_readable's common case, inline: it runs at every checkout
        except RuntimeError:
            pass  # another thread polls this connection now (see _pool_readable)
        except (OSError, ValueError):
            return False
        try:
            return not self._pool_readable()
        except (OSError, ValueError):
            return False

    def _pool_readable(self) -> bool:
        """Whether the server sent anything (EOF included), by a zero-timeout poll: never waits, never yields."""
        try:
            return bool(self._pool_poller.poll(0))
        except RuntimeError:
            # Another thread polls this connection now: the maintenance thread looks at idle connections outside the
            # pool's lock, and a checkout or return may look at the same one (threads; a greenlet never overlaps).
            # select.poll refuses a second poll() on one object; one of our own answers the same.
            poller = _poll()
            poller.register(self._sock.fileno(), select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))

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

    # -- the session: set-up, tracking, reset on return, its end ------------------------------------------------------

    def pool_start_session(self, policy: SessionPolicy) -> None:
        """Send the session set-up on a new connection and, for reset="tracked" or lease="transaction", find out
        whether the server reports state changes on it: decided per connection (a proxy may pass some through and not
        others)."""
        self._pool_per_statement = policy.per_statement
        if policy.track_state and self.client_flag & CLIENT.SESSION_TRACK:
            # A probe that certainly changes state tells whether this server (or a proxy on the way) reports it.
            statuses = self.pool_run_pipelined(
                [_TRACKING_ON, "SET @pool_tracking_probe = NULL", *policy.session_init])
            if statuses[1] & SERVER_SESSION_STATE_CHANGED:
                catalogue = policy.catalogue
                if catalogue is None:  # at a cold start several connections may read it at once: harmless
                    catalogue = policy.catalogue = Catalogue(self.pool_fetch(policy.catalogue_query), policy.clock())
                self._pool_catalogue = catalogue
            policy.log_tracking_once()
        else:
            if policy.track_state:
                policy.log_tracking_once()
            if policy.session_init:
                self.pool_run_pipelined(policy.session_init)
        self.pool_clear_tracking()

    def pool_reset(self, mode: ResetMode, policy: SessionPolicy, vetted: bool = False) -> bool:
        """Make this connection fit for the next caller; `mode` is the pool's reset setting. True if the server
        session's state was cleared. See pool.abc.Driver.reset."""
        if self._sock is None:
            raise pymysql.err.OperationalError(2013, "the connection was closed while it was lent out")
        if (vetted and mode is not ResetMode.FULL and policy.autocommit
                and not (self.pool_session_changed() or self._pool_database_changed)):
            # pool_may_release has just found no transaction (so autocommit is on, as the policy wants), no answer
            # due and no session state: the return between two statements sends nothing, unless the catalogue is
            # due again, and its check belongs to the full path. The session check is repeated (it is cheap) so that
            # the reset, not the pinning rules alone, stands between one borrower's session state and the next.
            catalogue = self._pool_catalogue
            if mode is ResetMode.ROLLBACK or catalogue is not None and not catalogue.due(policy.clock()):
                self.autocommit_mode = True
                self.pool_clear_tracking()
                self.pool_forget_results()
                return False
        result = self._result
        if result is not None and (result.unbuffered_active or result.has_next):
            self.pool_settle()
        # No look at the socket here: the pool gave it back only in step (every answer read: nothing of ours can be
        # on the wire), and whatever the server sends unasked from now on is found before the next lend.
        match mode:
            case ResetMode.FULL:
                cleared = True
            case ResetMode.TRACKED:
                cleared = self._pool_left_state_behind(policy)
            case ResetMode.ROLLBACK:
                cleared = False
                if self.pool_may_be_in_transaction():
                    # Never let SET autocommit=1 commit what the caller left open: roll back first, in the same write.
                    statements = ["ROLLBACK"]
                    if policy.autocommit and not self.server_status & SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT:
                        statements.append("SET autocommit=1")
                    self.pool_run_pipelined(statements)
            case _:  # a mode added to ResetMode and not handled here must not reset nothing silently
                assert_never(mode)
        if cleared:
            self._pool_reset_session(policy)
        if bool(self.server_status & SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT) != policy.autocommit:
            self.autocommit(policy.autocommit)
        self.autocommit_mode = policy.autocommit
        self.pool_clear_tracking()
        self.pool_forget_results()
        return cleared

    def _pool_left_state_behind(self, policy: SessionPolicy) -> bool:
        """Whether the checkout that ended may have changed the session (reset="tracked"): always, where the server
        does not report changes or the catalogue cannot judge; no round trip otherwise, unless the catalogue is due."""
        catalogue = self._pool_catalogue
        if catalogue is None or not self._pool_catalogue_vouches(catalogue, policy):
            return True
        return (self.pool_session_changed() or self._pool_database_changed
                or self.get_autocommit() != policy.autocommit)

    def _pool_catalogue_vouches(self, catalogue: Catalogue, policy: SessionPolicy) -> bool:
        """Whether the catalogue can judge this checkout: read again first when due (then a checkout returned more
        than REFRESH_AFTER seconds after a routine or trigger was created is judged with it); a catalogue that
        changed meanwhile, or that cannot see triggers, cannot vouch for a checkout that ran before."""
        now = policy.clock()
        if catalogue.due(now):
            before = (catalogue.functions, catalogue.trigger_tables)
            catalogue.update(self.pool_fetch(policy.catalogue_query), now)
            if (catalogue.functions, catalogue.trigger_tables) != before:
                return False
        if catalogue.complete:
            return True
        policy.log_incomplete_catalogue_once()
        return False

    def _pool_reset_session(self, policy: SessionPolicy) -> None:
        # One round trip: COM_RESET_CONNECTION clears user variables, temporary tables, locks, session variables
        # and the open transaction; the session set-up is sent in the same write and answered in order.
        statements = list(policy.session_init)
        if self._pool_database_changed and policy.database:
            # COM_RESET_CONNECTION keeps the current database: a `USE other` would reach the next caller.
            statements.insert(0, "USE `" + policy.database.replace("`", "``") + "`")
        if self._pool_catalogue is not None:
            # COM_RESET_CONNECTION turns the session's tracking off with every other session variable. (No statement
            # to clear the state-changed flag after it: each answer's own status is what a checkout is judged by.)
            statements = [_TRACKING_ON, *statements]
        if not is_mariadb(self) and self.charset == policy.charset:
            # MySQL resets the character set to the server's default; MariaDB keeps it.
            collate = f" COLLATE {self.collation}" if self.collation else ""
            statements.insert(0, f"SET NAMES {self.charset}{collate}")
        self.pool_run_pipelined(statements, reset_first=True)
        if self.charset != policy.charset:
            # The caller changed the character set (SET NAMES through PyMySQL): the next one gets the pool's.
            self.set_character_set(policy.charset, policy.collation)

    def pool_end_session(self, aborted: PooledConnection) -> None:
        """End the server session of `aborted` from this connection (see pool.abc.Driver.end_session)."""
        # Only the server that runs it can end it; a host list may have failed over since.
        if (self.host, self.port, self.unix_socket) != (aborted.host, aborted.port, aborted.unix_socket):
            return
        try:
            self.pool_fetch(f"KILL CONNECTION {int(aborted.server_thread_id[0])}")
        except MySQLError as exc:
            if not (exc.args and exc.args[0] == _ER_NO_SUCH_THREAD):
                raise  # else it ended meanwhile by itself
        self.pool_clear_tracking()

    # -- the pool's own statements ------------------------------------------------------------------------------------

    def pool_fetch(self, sql: str) -> tuple[tuple[Any, ...], ...]:
        """The rows of one of the pool's own queries, leaving nothing a caller could read: no result for insert_id()
        or affected_rows(), no cursor among the checkout's."""
        self.query(sql)
        result, self._result = self._result, None
        self._affected_rows = 0
        return tuple(result.rows or ()) if result is not None else ()

    def pool_forget_results(self) -> None:
        # What the previous borrower's last statement left for insert_id() and affected_rows().
        self._result = None
        self._affected_rows = 0

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

    def pool_run_pipelined(self, statements: Sequence[str], reset_first: bool = False) -> list[int]:
        """Send `statements` (after a COM_RESET_CONNECTION if asked) in one write and read every answer in order;
        returns the server status after each statement."""
        payload = b""
        if reset_first:
            payload += struct.pack("<iB", 1, COM_RESET_CONNECTION)
        for sql in statements:
            body = sql.encode(self.encoding)
            payload += struct.pack("<iB", len(body) + 1, COMMAND.COM_QUERY) + body
        if not payload:
            return []
        if self._sock is None:
            raise InterfaceError(0, "connection is closed")
        if self._pool_pending or self._pool_interrupted:
            raise OutOfStep(0, "the pool's own statements found the connection out of step")
        self._pool_issuer = getcurrent()
        self._pool_pending += len(statements) + reset_first
        self._write_bytes(payload)
        if reset_first:
            self._next_seq_id = 1
            self._read_ok_packet()
        statuses = []
        for _ in statements:
            self._next_seq_id = 1
            self._read_query_result()
            while self._result is not None and self._result.has_next:
                self._read_query_result()  # numbered on from the previous result: no sequence reset
            statuses.append(self.server_status)
        self._result = None
        return statuses


class LeasingConnection:
    """What a unit of work holds under lease="transaction": PyMySQL's connection API over a pool connection that it
    holds only while a statement, a transaction, an open cursor, an unread result or session state needs one
    (`pool.core.Borrower` takes and gives back the leases; `PooledConnection.pool_may_release` decides).

    Autocommit is this object's until a statement runs: `autocommit(False)` (Django's atomic()) is applied to the
    connection the next statement takes, and a COMMIT or ROLLBACK with no statement since is a no-op, as it would be
    on the server. Everything else is forwarded to the held connection, or to one taken for the call."""

    __slots__ = ("_borrower", "_policy", "_autocommit", "_cursors", "_closed", "_last_insert_id", "_last_affected")

    def __init__(self, borrower: Any, policy: SessionPolicy) -> None:
        self._borrower = borrower
        self._policy = policy
        self._autocommit = policy.autocommit
        self._cursors = 0  # open cursors: each keeps the connection
        self._closed = False
        self._last_insert_id = 0
        self._last_affected = 0

    def _take(self) -> Any:
        """The connection for the next statement: the one held, or one taken now in this unit's autocommit mode."""
        if self._closed:
            raise ConnectionReturned(0, _RETURNED_MESSAGE)
        borrower = self._borrower
        if borrower.held is not None:
            return borrower.held.connection
        conn = borrower.take().connection
        if self._autocommit != self._policy.autocommit:
            try:
                conn.autocommit(self._autocommit)
            except BaseException:
                borrower.end(discard=True)
                raise
        return conn

    def _done(self) -> None:
        """A statement, COMMIT or ROLLBACK is over: the connection may go back, if no cursor of ours is open."""
        lease = self._borrower.held
        if lease is None or self._cursors:
            return
        conn = lease.connection
        self._last_insert_id, self._last_affected = conn.insert_id(), conn.affected_rows()
        self._borrower.statement_done()

    def _cursor_closed(self) -> None:
        self._cursors -= 1
        self._done()

    # -- the connection API -------------------------------------------------------------------------------------------

    def cursor(self, cursor: Any = None) -> LeasedCursor:
        conn = self._take()
        made = conn.cursor(cursor) if cursor is not None else conn.cursor()
        self._cursors += 1
        return LeasedCursor(made, self)

    def autocommit(self, value: Any) -> None:
        self._autocommit = bool(value)
        lease = self._borrower.held
        if lease is not None:
            conn = lease.connection
            changed = bool(conn.get_autocommit()) != self._autocommit
            conn.autocommit(self._autocommit)
            # Nothing sent, nothing changed: the connection stays for the statement that follows (Django's connect()
            # sets autocommit on the connection it has just taken, before its first statement).
            if changed:
                self._done()

    def get_autocommit(self) -> bool:
        lease = self._borrower.held
        return bool(lease.connection.get_autocommit()) if lease is not None else self._autocommit

    def commit(self) -> None:
        lease = self._borrower.held
        if lease is not None:
            lease.connection.commit()
            self._done()

    def rollback(self) -> None:
        lease = self._borrower.held
        if lease is not None:
            lease.connection.rollback()
            self._done()

    def ping(self, reconnect: bool = False) -> None:
        # Between statements there is nothing to check: the pool checks every connection it lends. Once closed,
        # though, this object is as unusable as a closed PyMySQL connection, and says so (Django's is_usable()).
        if self._closed:
            raise ConnectionReturned(0, _RETURNED_MESSAGE)
        lease = self._borrower.held
        if lease is not None:
            lease.connection.ping(reconnect=False)

    # The last statement's counters, kept when its connection went back (the OK packet's, as PyMySQL gives them).
    def insert_id(self) -> Any:
        lease = self._borrower.held
        return lease.connection.insert_id() if lease is not None else self._last_insert_id

    def affected_rows(self) -> Any:
        lease = self._borrower.held
        return lease.connection.affected_rows() if lease is not None else self._last_affected

    def close(self) -> None:
        self._closed = True
        self._borrower.end()

    @property
    def open(self) -> bool:
        return not self._closed

    def __getattr__(self, name: str) -> Any:
        # The rest of PyMySQL's API (query, begin, select_db, escape, encoders, server_version, ...): the held
        # connection's, or one taken for the call and given back after it, if nothing then ties it to this unit.
        try:
            value = getattr(self._take(), name)
        finally:
            self._done()
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return getattr(self._take(), name)(*args, **kwargs)
            finally:
                self._done()

        return call

    def __repr__(self) -> str:
        lease = self._borrower.held
        state = "closed" if self._closed else "holding a connection" if lease is not None else "between statements"
        return f"<per-transaction connection of pool {self._borrower.pool.name!r}, {state}>"


class LeasedCursor:
    """A cursor of a `LeasingConnection`: PyMySQL's cursor, which keeps the connection until it is closed."""

    __slots__ = ("_cursor", "_owner", "_closed")

    def __init__(self, cursor: Any, owner: LeasingConnection) -> None:
        self._cursor = cursor
        self._owner = owner
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._cursor.close()  # reads what the caller left unread (an unbuffered result's rows, later results)
        finally:
            self._owner._cursor_closed()

    def __enter__(self) -> LeasedCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Any:
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __del__(self) -> None:
        # Freed unclosed: no I/O here (a finalizer may run in any greenlet); the next statement or the unit's end
        # gives the connection back.
        if not self._closed:
            self._closed = True
            self._owner._cursors -= 1


class PyMySQLDriver:
    """The pool's `Driver` for PyMySQL: opens `PooledConnection`s with the pool's timeouts, TLS contexts and session
    set-up, to the first host of the list that answers, and hands every other call on to the connection.

    `init_command` and `sql_mode` are taken out of PyMySQL's hands and sent by the driver, so that a full reset (which
    clears them on the server) can apply them again. `host` may be a host list (Django's HOST, `db1:3307,db2`), parsed
    here once (pool.hosts): a bad port in it or in `port` is a ConfigError when the pool is built. `disconnect_codes`
    adds server error codes after which a connection must be dropped (e.g. a proxy's own codes); `is_disconnect` adds
    a predicate of your own.
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
        track_session_state: bool = False,
        per_statement: bool = False,
        clock: Clock = time.monotonic,
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
        kwargs["pool_tls_contexts"] = TLSContexts()
        if track_session_state:
            kwargs["client_flag"] = int(kwargs.get("client_flag", 0)) | CLIENT.SESSION_TRACK
        self.connect_kwargs = kwargs
        hosts = HostList.from_connect_kwargs(kwargs)
        self.hosts = HostList(hosts[:1]) if kwargs.get("unix_socket") else hosts
        self.backoff = HostBackoff(self.hosts, clock)
        self.disconnect_codes = DISCONNECT_CODES | frozenset(disconnect_codes)
        self.extra_is_disconnect = is_disconnect
        where = kwargs.get("unix_socket") or self.hosts.format()
        self.server = f"{kwargs.get('user')}@{where}"
        self.target = f"{self.server}/{kwargs.get('database', '')}"
        database = str(kwargs.get("database") or "")
        self.session = SessionPolicy(
            target=self.target, session_init=tuple(init), autocommit=bool(kwargs["autocommit"]),
            charset=kwargs["charset"], collation=kwargs.get("collation"), database=database,
            track_state=track_session_state, per_statement=per_statement, clock=clock,
            catalogue_query=_CATALOGUE_QUERY.format(database=pymysql.converters.escape_string(database).join("''")))

    @classmethod
    def for_config(cls, connect_kwargs: Mapping[str, Any], config: PoolConfig, **options: Any) -> PyMySQLDriver:
        return cls(connect_kwargs, connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
                   write_timeout=config.write_timeout,
                   # Leasing per transaction needs the server's reports of session state too, whatever the reset.
                   track_session_state=config.reset == ResetMode.TRACKED or config.lease == LeaseMode.TRANSACTION,
                   per_statement=config.lease == LeaseMode.TRANSACTION, **options)

    def __repr__(self) -> str:
        return f"<PyMySQLDriver {self.target}>"

    def connect(self) -> PooledConnection:
        conn = self.open_first_ready_host() if len(self.hosts) > 1 else self.open(self.hosts[0])
        try:
            conn.pool_start_session(self.session)
        except BaseException:
            conn.pool_abort()
            raise
        return conn

    def open(self, host: Host) -> PooledConnection:
        """A connection to `host`, its session not set up yet."""
        return open_connection(PooledConnection, **{**self.connect_kwargs, "host": host.name, "port": host.port})

    def open_first_ready_host(self) -> PooledConnection:
        """The first host that answers, in the back-off's order (pool.hosts.HostBackoff). A Galera node must be ready
        and synced."""
        order = self.backoff.order()
        failures: list[str] = []
        for host in order:
            conn: PooledConnection | None = None
            try:
                conn = self.open(host)
                problem = _galera_problem(conn)
                if problem:
                    raise pymysql.err.OperationalError(1047, problem)
            except (MySQLError, OSError) as exc:
                if conn is not None:
                    conn.pool_abort()
                failed, delay = self.backoff.failed(host)
                if failed == 1:
                    log.warning("pool for %s: host %s failed (%s); skipped while it keeps failing, retried after %gs "
                                "and then less often", self.target, host.label, _describe(exc), delay)
                failures.append(f"{host.label}: {_describe(exc)}")
                continue
            if self.backoff.answered(host):
                log.warning("pool for %s: host %s answers again", self.target, host.label)
            return conn
        skipped = len(self.hosts) - len(order)
        raise pymysql.err.OperationalError(
            2003, "no host of the list could be used (" + "; ".join(failures)
            + (f"; {skipped} more backing off after earlier failures" if skipped else "") + ")")

    # The hot path calls these once per checkout or return: bound straight to the connection's methods, no extra frame.
    is_alive = staticmethod(PooledConnection.pool_is_alive)
    in_flight = staticmethod(PooledConnection.pool_in_flight)
    abort = staticmethod(PooledConnection.pool_abort)
    forget = staticmethod(PooledConnection.pool_forget)
    lend = staticmethod(ConnectionHandle)

    def ping(self, conn: PooledConnection) -> None:
        conn.ping(reconnect=False)  # never reconnect: a silent reconnect would drop session state

    def reset(self, conn: PooledConnection, mode: ResetMode, vetted: bool = False) -> bool:
        return conn.pool_reset(mode, self.session, vetted)

    def end_session(self, conn: PooledConnection, aborted: PooledConnection) -> None:
        conn.pool_end_session(aborted)

    def close(self, conn: PooledConnection) -> None:
        try:
            if conn.open:
                conn.close()  # COM_QUIT, then the socket
        except Exception:  # noqa: BLE001 - a broken connection may fail to say goodbye
            conn.pool_abort()

    def is_disconnect(self, exc: BaseException) -> bool:
        if _is_disconnect_code(exc, self.disconnect_codes):
            return True
        return self.extra_is_disconnect is not None and self.extra_is_disconnect(exc)

    def server_wait_timeout(self, conn: PooledConnection) -> float | None:
        try:
            rows = conn.pool_fetch("SELECT @@wait_timeout")
        except MySQLError:
            return None
        return float(rows[0][0]) if rows else None

    def revoke(self, conn: PooledConnection, handle: ConnectionHandle | None) -> None:
        conn.pool_revoke(handle)

    def may_release(self, conn: PooledConnection) -> bool:
        return conn.pool_may_release(self.session)

    def borrowing(self, borrower: Any) -> LeasingConnection:
        return LeasingConnection(borrower, self.session)


def _describe(exc: BaseException) -> str:
    args = exc.args
    if len(args) == 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return f"{type(exc).__name__}: {exc}"


def _galera_problem(conn: PooledConnection) -> str | None:
    """Why this node must not be used (a Galera node not ready or not synced), or None."""
    try:
        ((wsrep_on, ready, state),) = conn.pool_fetch(_GALERA_READINESS)
    except MySQLError:
        return None  # MySQL has no @@wsrep_on: not Galera
    if not wsrep_on:
        return None
    if str(ready).upper() != "ON" or str(state) != "4":
        return f"Galera node not usable: wsrep_ready={ready}, wsrep_local_state={state} (4 is Synced)"
    return None


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


def is_mariadb(conn: Any) -> bool:
    return "mariadb" in str(conn.server_version).lower()

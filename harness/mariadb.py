"""A private MariaDB server owned by one process tree: tests and the demo site use it.

It lives in its own data directory with its own socket and loopback port, so that tests can set globals, kill
connections, freeze and restart it without touching any server they did not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

APP_USER = "app"
APP_PASSWORD = "app-secret-pw"
APP_DATABASE = "app"
ROOT_PASSWORD = "root-secret-pw"


class PrivateServerError(RuntimeError):
    """The private server could not be set up or did not come up."""


def _find_binary(*names: str) -> str:
    for name in names:
        for folder in (None, "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            path = shutil.which(name, path=folder) if folder else shutil.which(name)
            if path:
                return path
    raise PrivateServerError(
        f"none of {names} found; install the MariaDB server (apt-get install mariadb-server) or set DATABASE_URL"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: bound all at once, so that the kernel cannot hand the same one out twice (one at a
    time, a port closed is free again at once; a Galera node once got another's gcomm port as its IST port)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class PrivateMariaDB:
    """Start, own and stop a mariadbd on 127.0.0.1 with a temporary (or given) data directory."""

    basedir: Path | None = None
    port: int = 0
    max_connections: int = 300
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _owns_basedir: bool = field(default=False, init=False)

    @property
    def datadir(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "data"

    @property
    def socket_path(self) -> str:
        assert self.basedir is not None
        return str(self.basedir / "mysqld.sock")

    @property
    def log_path(self) -> Path:
        assert self.basedir is not None
        return self.basedir / "mysqld.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def app_url(self) -> str:
        return f"mysql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{self.port}/{APP_DATABASE}"

    def admin_url(self) -> str:
        """Root over the server's socket (root may not log in over TCP)."""
        return f"mysql://root:{ROOT_PASSWORD}@localhost/?unix_socket={self.socket_path}"

    def app_connect_kwargs(self) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": APP_USER,
            "password": APP_PASSWORD,
            "database": APP_DATABASE,
        }

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> PrivateMariaDB:
        if self.basedir is None:
            self.basedir = Path(tempfile.mkdtemp(prefix="kit-mariadb-"))
            self._owns_basedir = True
        self.basedir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        fresh = not (self.datadir / "mysql").exists()
        try:
            if fresh:
                self._install_db()
            self._launch()
            if fresh:
                self._create_app_account()
        except BaseException:
            self.destroy()  # a server that came up half would outlive the test run
            raise
        return self

    def _install_db(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        cmd = [
            _find_binary("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise PrivateServerError(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")

    def _launch(self) -> None:
        assert self.basedir is not None
        (self.basedir / "tmp").mkdir(exist_ok=True)
        cmd = [
            _find_binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.basedir}/mysqld.pid",
            f"--log-error={self.log_path}",
            # Its own: a starting mariadbd deletes every #sql* file in its tmpdir, which in a shared /tmp are the
            # live temporary tables of every other private server.
            f"--tmpdir={self.basedir / 'tmp'}",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            "--skip-name-resolve",
            f"--max-connections={self.max_connections}",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=48M",
            "--innodb-flush-log-at-trx-commit=2",
            "--skip-log-bin",
            "--performance-schema=OFF",
            *self.extra_args,
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                self._root_connect(password=None, connect_timeout=2).close()
                return
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] == 1045:  # root password already set: the server is up
                    return
                last_error = exc
            time.sleep(0.1)
        log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        raise PrivateServerError(f"mariadbd did not come up on port {self.port}: {last_error}\n{log}")

    def _root_connect(self, password: str | None = ROOT_PASSWORD, **kwargs: Any) -> pymysql.connections.Connection:
        return pymysql.connect(
            unix_socket=self.socket_path, user="root", password=password or "", ssl_disabled=True, autocommit=True,
            **kwargs,
        )

    def _create_app_account(self) -> None:
        with self._root_connect(password=None) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {APP_DATABASE} CHARACTER SET utf8mb4")
            # 127.0.0.0/8: the app hosts of a tier played on this machine connect from 127.0.0.2, 127.0.0.3, ...
            # (bind_address; tests/test_tier.py). Loopback only; --skip-name-resolve keeps the match numeric. The
            # exact 127.0.0.1 account still wins for connections from there (its limits, its grants).
            for host in ("127.0.0.1", "localhost", "127.0.0.0/255.0.0.0"):
                cur.execute(f"CREATE USER IF NOT EXISTS '{APP_USER}'@'{host}' IDENTIFIED BY %s", (APP_PASSWORD,))
                # Django's test runner creates and drops test_<name> databases.
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{APP_USER}'@'{host}'")
            cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", (ROOT_PASSWORD,))

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # a frozen server cannot shut down
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self._launch()

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)
        self._launch()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def destroy(self) -> None:
        self.stop()
        if self._owns_basedir and self.basedir is not None:
            shutil.rmtree(self.basedir, ignore_errors=True)

    # -- administration (root, over the socket, never counted as the app) ------------------------------------------

    def admin(self) -> pymysql.connections.Connection:
        return self._root_connect()

    def query(self, sql: str, args: object = None) -> list[tuple[Any, ...]]:
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def set_global(self, name: str, value: object) -> None:
        self.query(f"SET GLOBAL {name} = %s", (value,))

    def app_thread_ids(self, user: str = APP_USER) -> list[int]:
        rows = self.query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
        return [int(row[0]) for row in rows]

    def app_connection_count(self, user: str = APP_USER) -> int:
        return len(self.app_thread_ids(user))

    def kill(self, thread_id: int, query_only: bool = False) -> None:
        self.query(f"KILL {'QUERY' if query_only else 'CONNECTION'} {int(thread_id)}")

    def status(self, name: str) -> int:
        rows = self.query("SHOW GLOBAL STATUS LIKE %s", (name,))
        return int(rows[0][1]) if rows else 0

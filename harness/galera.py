"""A private 3-node MariaDB Galera cluster on loopback, owned by the test that starts it.

Each node has its own datadir, SQL port, group-communication, IST and SST ports. Nodes run as the `mysql` user with
their datadir owned by it: run as root, the joiner's rsync state-transfer daemon drops to `nobody` and cannot write the
datadir. `--no-defaults` comes first everywhere: the system my.cnf would break a private server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from harness.mariadb import APP_DATABASE, APP_PASSWORD, APP_USER, PrivateServerError, _find_binary, free_ports

PROVIDER_PATHS = ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/libgalera_smm.so")


def galera_provider() -> str | None:
    return next((p for p in PROVIDER_PATHS if os.path.exists(p)), None)


@dataclass
class GaleraNode:
    index: int
    basedir: Path
    port: int
    gcomm_port: int
    ist_port: int
    sst_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        return self.basedir / "data"

    @property
    def socket_path(self) -> str:
        return str(self.basedir / "mysqld.sock")

    @property
    def label(self) -> str:
        return f"127.0.0.1:{self.port}"

    def root(self) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=self.socket_path, user="root", password="", autocommit=True,
                               ssl_disabled=True, connect_timeout=3, read_timeout=10)

    def query(self, sql: str, args: object = None) -> list[tuple[Any, ...]]:
        with self.root() as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def state(self) -> dict[str, str]:
        rows = self.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state', "
                          "'wsrep_cluster_size')")
        return {str(k): str(v) for k, v in rows}

    def synced(self) -> bool:
        try:
            state = self.state()
        except pymysql.err.MySQLError:
            return False
        return state.get("wsrep_ready") == "ON" and state.get("wsrep_local_state") == "4"

    def app_connection_count(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s",
                              (APP_USER,))[0][0])

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


class GaleraCluster:
    """Three nodes; `start()` bootstraps the first and joins the others by rsync state transfer."""

    def __init__(self, size: int = 3) -> None:
        provider = galera_provider()
        if provider is None:
            raise PrivateServerError("the Galera provider is missing: apt-get install galera-4 rsync")
        self.provider = provider
        self.root = Path(tempfile.mkdtemp(prefix="kit-galera-"))
        os.chmod(self.root, 0o755)
        ports = free_ports(4 * size)  # every node's four, distinct
        self.nodes = [GaleraNode(i, self.root / f"node{i}", port=ports[4 * i], gcomm_port=ports[4 * i + 1],
                                 ist_port=ports[4 * i + 2], sst_port=ports[4 * i + 3]) for i in range(size)]

    def app_url(self) -> str:
        hosts = ",".join(node.label for node in self.nodes)
        return f"mysql://{APP_USER}:{APP_PASSWORD}@{hosts}/{APP_DATABASE}"

    def start(self) -> GaleraCluster:
        try:
            for node in self.nodes:
                node.basedir.mkdir(parents=True)
                node.datadir.mkdir()
                (node.basedir / "tmp").mkdir()  # its own tmpdir: see harness/mariadb.py
                self._install(node)
            self._launch(self.nodes[0], bootstrap=True)
            self._wait(self.nodes[0])
            self._create_app_account(self.nodes[0])
            for node in self.nodes[1:]:
                self._launch(node)
                self._wait(node)
        except BaseException:
            self.destroy()  # the nodes that did start would outlive the test run
            raise
        return self

    def _install(self, node: GaleraNode) -> None:
        result = subprocess.run(
            [_find_binary("mariadb-install-db", "mysql_install_db"), "--no-defaults", f"--datadir={node.datadir}",
             "--user=mysql", "--auth-root-authentication-method=socket", "--skip-test-db"],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise PrivateServerError(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")
        subprocess.run(["chown", "-R", "mysql:mysql", str(node.basedir)], check=True)

    def _launch(self, node: GaleraNode, bootstrap: bool = False) -> None:
        peers = "" if bootstrap else ",".join(f"127.0.0.1:{n.gcomm_port}" for n in self.nodes if n is not node)
        options = ";".join([
            f"gmcast.listen_addr=tcp://127.0.0.1:{node.gcomm_port}", f"ist.recv_addr=127.0.0.1:{node.ist_port}",
            "gcache.size=16M",
            # Notice a dead peer within seconds rather than the defaults' tens of seconds.
            "evs.suspect_timeout=PT2S", "evs.inactive_timeout=PT4S", "evs.install_timeout=PT4S",
            "evs.keepalive_period=PT0.5S", "evs.inactive_check_period=PT0.5S",
        ])
        cmd = [
            _find_binary("mariadbd", "mysqld"), "--no-defaults", f"--datadir={node.datadir}",
            f"--socket={node.socket_path}", f"--pid-file={node.basedir}/mysqld.pid",
            f"--log-error={node.basedir}/mysqld.log", f"--tmpdir={node.basedir}/tmp", "--user=mysql",
            "--bind-address=127.0.0.1",
            f"--port={node.port}", "--skip-name-resolve", "--max-connections=100",
            "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=2",
            "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2", "--performance-schema=OFF",
            "--wsrep-on=ON", f"--wsrep-provider={self.provider}", "--wsrep-cluster-name=kit",
            f"--wsrep-cluster-address=gcomm://{peers}", f"--wsrep-node-address=127.0.0.1:{node.gcomm_port}",
            f"--wsrep-provider-options={options}", "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{node.sst_port}",
        ]
        if bootstrap:
            cmd.append("--wsrep-new-cluster")
        node.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def _wait(self, node: GaleraNode, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                break
            if node.synced():
                return
            time.sleep(0.2)
        log = (node.basedir / "mysqld.log").read_text(errors="replace")[-3000:]
        raise PrivateServerError(f"Galera node {node.index} did not become Synced:\n{log}")

    def _create_app_account(self, node: GaleraNode) -> None:
        # Replicated to every node that joins (users and databases travel with the state transfer).
        with node.root() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {APP_DATABASE} CHARACTER SET utf8mb4")
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"CREATE USER IF NOT EXISTS '{APP_USER}'@'{host}' IDENTIFIED BY %s", (APP_PASSWORD,))
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{APP_USER}'@'{host}'")

    def restart(self, node: GaleraNode) -> None:
        """Start a killed node again: it rejoins the cluster (IST or SST) and is used again once Synced."""
        self._launch(node)
        self._wait(node)

    def destroy(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(30)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

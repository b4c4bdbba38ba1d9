"""A 3-node Galera cluster behind a host list (issue 13): a node killed under load fails only the requests in flight on
it, new connections land on the next node, no server ever holds more than the budget, and the node is used again
once it has rejoined. The cluster is private (harness/galera.py), on loopback ports."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from harness.galera import GaleraCluster, galera_provider
from harness.mariadb import PrivateMariaDB
from harness.tools import ROOT, Gunicorn, wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(galera_provider() is None, reason="the Galera provider (apt: galera-4) is missing")]

WORKERS, POOL = 2, 5
BUDGET = WORKERS * POOL  # per server: with failover, any node may end up holding every connection


@pytest.fixture(scope="module")
def cluster() -> Iterator[GaleraCluster]:
    galera = GaleraCluster().start()
    try:
        migrated = subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, capture_output=True,
                                  text=True, timeout=300,
                                  env={**os.environ, "DATABASE_URL": galera.app_url(), "PYTHONPATH": str(ROOT)})
        assert migrated.returncode == 0, migrated.stderr
        yield galera
    finally:
        galera.destroy()


class NodeCounts:
    """Polls each node's count of the app's connections (over root's socket) and keeps each node's peak."""

    def __init__(self, galera: GaleraCluster) -> None:
        self.galera = galera
        self.peaks = [0] * len(galera.nodes)
        self.latest = [0] * len(galera.nodes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for index, node in enumerate(self.galera.nodes):
                try:
                    count = node.app_connection_count()
                except Exception:  # noqa: BLE001 - a killed node has nothing to count
                    count = 0
                self.latest[index] = count
                self.peaks[index] = max(self.peaks[index], count)
            self._stop.wait(0.1)

    def __enter__(self) -> NodeCounts:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_node_killed_under_load_fails_only_its_requests_and_is_used_again(cluster: GaleraCluster,
                                                                           site_db: PrivateMariaDB) -> None:
    first = cluster.nodes[0]
    # Connections recycle every few seconds, so the first node gets new ones soon after it is back.
    server = Gunicorn(site_db, DATABASE_URL=cluster.app_url(), WEB_WORKERS=str(WORKERS), POOL_SIZE=str(POOL),
                      POOL_MAX_LIFETIME="4").start()
    try:
        with NodeCounts(cluster) as counts:
            loader, result = server.load_in_background(clients=40, requests=100_000, paths="/products/",
                                                       deadline=45, think=0.02)
            server.wait_for_checkouts(200)  # the load is served, and node 1 is seen taking it
            assert wait_until(lambda: counts.latest[0] > 0, timeout=30, interval=0.2)
            before_kill = list(counts.latest)
            killed_at = time.time()
            first.kill()
            time.sleep(8)
            cluster.restart(first)
            back_at = time.time()
            used_again = wait_until(lambda: counts.latest[0] > 0, timeout=30, interval=0.2)
            used_again_after = time.time() - back_at
            loader.join()
        log = server.log()
    finally:
        server.stop()
    start = result["wall_start"]
    failures = [start + t for t, _ in result["failures_at"]]
    print(f"\nGalera, node 1 killed under load: {result['ok']} ok, {len(failures)} failed, all within "
          f"{max((t - killed_at for t in failures), default=0):.1f}s of the kill; peaks per node {counts.peaks} "
          f"(budget {BUDGET} each); node 1 back in the cluster and taking connections {used_again_after:.1f}s later")
    assert before_kill[0] > 0 and before_kill[1] == before_kill[2] == 0, "first usable host in order: node 1"
    assert result["errors"] == {}, result["errors"]
    # Only requests in flight on the killed node fail: at most one per connection it held.
    assert len(failures) <= BUDGET, failures
    assert all(killed_at - 1 <= t <= killed_at + 5 for t in failures), (killed_at, failures)
    assert all(peak <= BUDGET for peak in counts.peaks), counts.peaks
    assert counts.peaks[1] > 0, "new connections must land on the next node"
    assert used_again, "the first node must take connections again once it has rejoined"
    assert "Traceback" not in log


def _app(node: object) -> object:
    import pymysql

    from harness.mariadb import APP_DATABASE, APP_PASSWORD, APP_USER

    return pymysql.connect(host="127.0.0.1", port=node.port, user=APP_USER, password=APP_PASSWORD,  # type: ignore[attr-defined]
                           database=APP_DATABASE, autocommit=False, ssl_disabled=True)


def test_certification_conflicts_and_read_your_writes_across_nodes(cluster: GaleraCluster) -> None:
    """What the docs say about writing to more than one node: a row changed on two nodes at once fails one commit
    with 1213, as a deadlock would; wsrep_sync_wait makes a read on another node wait for writes already certified."""
    import pymysql

    a, b, c = (_app(node) for node in cluster.nodes)
    try:
        # Galera spreads auto-increment values over the nodes (1, 4, 7, ...): take ids that exist.
        with a.cursor() as cur_a:  # type: ignore[attr-defined]
            cur_a.execute("SELECT id FROM shop_product ORDER BY id LIMIT 2")
            first, second = (row[0] for row in cur_a.fetchall())
        a.rollback()  # type: ignore[attr-defined]
        with a.cursor() as cur_a, b.cursor() as cur_b:  # type: ignore[attr-defined]
            cur_a.execute("UPDATE shop_product SET stock = stock + 1 WHERE id = %s", (first,))
            cur_b.execute("UPDATE shop_product SET stock = stock + 1 WHERE id = %s", (first,))
            b.commit()  # type: ignore[attr-defined]
            with pytest.raises(pymysql.err.OperationalError) as conflict:
                a.commit()  # type: ignore[attr-defined]
        assert conflict.value.args[0] == 1213, conflict.value.args
        c.autocommit(True)  # type: ignore[attr-defined]
        with c.cursor() as cur_c:  # type: ignore[attr-defined]
            cur_c.execute("SET SESSION wsrep_sync_wait = 1")
            for value in range(20):  # each write on one node, read at once on another: always seen
                with b.cursor() as cur_b:  # type: ignore[attr-defined]
                    cur_b.execute("UPDATE shop_product SET stock = %s WHERE id = %s", (1000 + value, second))
                b.commit()  # type: ignore[attr-defined]
                cur_c.execute("SELECT stock FROM shop_product WHERE id = %s", (second,))
                assert cur_c.fetchone()[0] == 1000 + value
    finally:
        for conn in (a, b, c):
            conn.close()  # type: ignore[attr-defined]

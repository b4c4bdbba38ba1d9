"""Does the deployment's worst case fit the server's connection limits?

The worst case is hosts x workers x pool size, doubled while a SIGHUP reload runs the old and the new workers side by
side (for up to graceful_timeout), plus a reserve for everything else that connects (admin, migrations, cron).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymysql


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

    @property
    def app_peak(self) -> int:
        return self.hosts * self.workers * self.pool_size * (2 if self.reload_overlap else 1)

    @property
    def needed(self) -> int:
        return self.app_peak + self.reserve

    @property
    def problems(self) -> list[str]:
        found = []
        if self.needed > self.max_connections:
            found.append(
                f"the app may open {self.app_peak} connections ({self.formula}) plus a reserve of {self.reserve}: "
                f"{self.needed} > the server's max_connections={self.max_connections}. Lower workers or POOL_SIZE, "
                f"or raise max_connections on the server"
            )
        if self.max_user_connections and self.app_peak > self.max_user_connections:
            found.append(
                f"the app may open {self.app_peak} connections ({self.formula}) > max_user_connections="
                f"{self.max_user_connections} for its user. Lower workers or POOL_SIZE, or raise the user's limit"
            )
        return found

    @property
    def formula(self) -> str:
        parts = [f"{self.hosts} hosts"] if self.hosts != 1 else []
        parts += [f"{self.workers} workers", f"pool {self.pool_size}"]
        if self.reload_overlap:
            parts.append("2 during a SIGHUP reload")
        return " x ".join(parts)

    def table(self) -> str:
        rows = [
            ("hosts", self.hosts), ("workers per host", self.workers), ("pool size per worker", self.pool_size),
            ("reload overlap (x2)", "yes" if self.reload_overlap else "no"), ("app peak", self.app_peak),
            ("reserve", self.reserve), ("needed", self.needed), ("server max_connections", self.max_connections),
            ("max_user_connections", self.max_user_connections or "none"), ("connected now (all users)", self.connected_now),
            ("verdict", "OVER BUDGET" if self.problems else "fits"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def read_server_limits(connect_kwargs: dict[str, Any]) -> tuple[int, int, int]:
    """(max_connections, max_user_connections as seen by this user, Threads_connected)."""
    kwargs = {k: v for k, v in connect_kwargs.items() if k != "options"}
    kwargs.setdefault("connect_timeout", 5)
    conn = pymysql.connect(**kwargs)
    try:
        with conn.cursor() as cur:
            # The session value of max_user_connections is the account's own limit when it has one.
            cur.execute("SELECT @@GLOBAL.max_connections, @@SESSION.max_user_connections")
            max_connections, max_user = cur.fetchone()
            cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
            connected = int(cur.fetchone()[1])
    finally:
        conn.close()
    return int(max_connections), max(int(max_user), 0), connected


def check(connect_kwargs: dict[str, Any], *, workers: int, pool_size: int, hosts: int = 1,
          reload_overlap: bool = True, reserve: int = 10) -> Budget:
    max_connections, max_user, connected = read_server_limits(connect_kwargs)
    return Budget(hosts, workers, pool_size, reload_overlap, reserve, max_connections, max_user, connected)

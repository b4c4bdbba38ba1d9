"""peewee on the kit's pool (seed 000: peewee's own pool hands out connections the server closed after wait_timeout).

    db = PooledMySQLDatabase(pool)
    with db.connection_context():   # one unit of work: borrow, then give back
        Product.get_by_id(1)
"""

from __future__ import annotations

from typing import Any

import peewee

from pool import ConnectionPool, Lease


class PooledMySQLDatabase(peewee.MySQLDatabase):
    """peewee's MySQLDatabase whose connect/close borrow from and return to a `pool.ConnectionPool`."""

    def __init__(self, pool: ConnectionPool, **kwargs: Any) -> None:
        super().__init__("pooled", **kwargs)
        self.pool = pool
        self._leases: dict[int, Lease] = {}

    def _connect(self) -> Any:
        lease = self.pool.acquire()
        self._leases[id(lease.connection)] = lease
        return lease.connection

    def _close(self, conn: Any) -> None:
        self.pool.release(self._leases.pop(id(conn)))

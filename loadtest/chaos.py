"""ChaosUser: kills random app connections on the server (KILL CONNECTION) while the other users load the site.

    KIT_CHAOS_DATABASE_URL=mysql://root:pw@127.0.0.1:3306/ locust -f loadtest/ Reader ChaosUser ...

It is `opt_in`: it runs only when named, never in the default mix.

It needs an account allowed to KILL other users' threads (root, or CONNECTION ADMIN), on a loopback server only. It
stops by itself after KIT_CHAOS_MAX_KILLS kills (default 20). The pool must drop the victims, refill, and lose no slot;
only requests that were using a victim at that moment may fail.
"""

from __future__ import annotations

import os
import random
from typing import Any

import _budget  # the connection budget gate, shared by every scenario
import _mix  # noqa: F401 - the default mix when no class is named
from locust import User, constant, events, task

MAX_KILLS = int(os.environ.get("KIT_CHAOS_MAX_KILLS", "20"))
kills = 0


@events.test_stop.add_listener
def _report(environment: Any, **_: Any) -> None:
    if kills:
        print(f"chaos: killed {kills} app connections", flush=True)


class ChaosUser(User):
    opt_in = True
    wait_time = constant(1.0)
    fixed_count = 1  # one chaos monkey, whatever -u says

    def on_start(self) -> None:
        from pool.dburl import parse_database_url

        url = os.environ.get("KIT_CHAOS_DATABASE_URL", "")
        if not url:
            raise SystemExit("ChaosUser needs KIT_CHAOS_DATABASE_URL (an account that may KILL the app's threads)")
        kwargs = parse_database_url(url)
        kwargs.pop("options", None)
        if kwargs.get("host") not in _budget.LOOPBACK and "unix_socket" not in kwargs:
            raise SystemExit("ChaosUser only kills connections on a loopback server")
        app_url = os.environ.get("DATABASE_URL", "")
        self.app_user = os.environ.get("KIT_APP_DB_USER") or (parse_database_url(app_url)["user"] if app_url else "")
        if not self.app_user:
            raise SystemExit("ChaosUser needs DATABASE_URL or KIT_APP_DB_USER to know whose connections to kill")
        import pymysql

        self.admin = pymysql.connect(**kwargs, autocommit=True, connect_timeout=5, read_timeout=10)

    def on_stop(self) -> None:
        self.admin.close()

    @task
    def kill_one(self) -> None:
        global kills
        if kills >= MAX_KILLS:
            return
        with self.admin.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (self.app_user,))
            victims = [row[0] for row in cur.fetchall()]
            if not victims:
                return
            victim = random.choice(victims)
            try:
                cur.execute(f"KILL CONNECTION {int(victim)}")
                kills += 1
            except Exception:  # noqa: BLE001 - the victim may have gone by itself meanwhile
                pass

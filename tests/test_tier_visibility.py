"""What the tier check can see (issue 28). Without the PROCESS privilege the server lists only the threads of the
account a connection logged in as, so app hosts that log in as other accounts are invisible to the start-up check,
TTIN and `python -m pool budget`: they say whose threads they counted, and what to change. No gunicorn here: a few
raw connections from 127.0.0.3 (bind_address) are the other host, and the check runs from 127.0.0.2.

The one-account tier under load is tests/test_tier.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from harness.mariadb import APP_DATABASE, PrivateMariaDB
from harness.tools import ROOT
from pool.budget import check_at_start
from tests.unit.fakes import RecordedLog

HERE, OTHER = "127.0.0.2", "127.0.0.3"
USER = "tierview"  # not the harness's app user: its accounts have every privilege, PROCESS included
PASSWORDS = {HERE: "here-secret-pw", OTHER: "other-secret-pw"}
SHARED_HOST = "127.0.0.0/255.0.0.0"  # one account for every app host on loopback
HELD = 3  # connections the other host holds


class Recorded(RecordedLog):
    def tier(self) -> tuple[str, str]:
        found = [line for line in self.lines if "the tier as the server lists it" in line[1]]
        assert len(found) == 1, self.lines
        return found[0]


@pytest.fixture
def accounts(db: PrivateMariaDB) -> Iterator[PrivateMariaDB]:
    yield db
    for host in (HERE, OTHER, SHARED_HOST):
        db.query(f"DROP USER IF EXISTS '{USER}'@'{host}'")
    db.query("DROP ROLE IF EXISTS tier_watcher")


def create_account(db: PrivateMariaDB, host: str, password: str) -> None:
    db.query(f"CREATE USER '{USER}'@'{host}' IDENTIFIED BY %s", (password,))
    db.query(f"GRANT ALL PRIVILEGES ON {APP_DATABASE}.* TO '{USER}'@'{host}'")


def url(db: PrivateMariaDB, password: str) -> str:
    return f"mysql://{USER}:{password}@127.0.0.1:{db.port}/{APP_DATABASE}?bind_address={HERE}"


def hold_connections(db: PrivateMariaDB, password: str) -> list[pymysql.connections.Connection]:
    return [pymysql.connect(host="127.0.0.1", port=db.port, user=USER, password=password, database=APP_DATABASE,
                            bind_address=OTHER) for _ in range(HELD)]


def check_from_here(db: PrivateMariaDB, password: str) -> tuple[Recorded, subprocess.CompletedProcess[str]]:
    """The start-up check and `python -m pool budget`, both from 127.0.0.2."""
    log = Recorded()
    check_at_start(log, url(db, password), workers=1, pool_size=2, strict=False, reserve=10)
    cli = subprocess.run([sys.executable, "-m", "pool", "budget", "--database-url", url(db, password),
                          "--workers", "1", "--pool-size", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cli.returncode == 0, cli.stdout + cli.stderr
    return log, cli


def check_while_held(accounts: PrivateMariaDB, holder_password: str) -> tuple[str, str, Any]:
    """The start-up check's tier line (level, text) and the budget command's run, from this host, while the other
    host holds its connections (logged in with `holder_password`)."""
    held = hold_connections(accounts, holder_password)
    try:
        log, cli = check_from_here(accounts, PASSWORDS[HERE])
    finally:
        for conn in held:
            conn.close()
    level, line = log.tier()
    print(f"\n{line}\n{cli.stdout}")
    return level, line, cli


def test_one_account_for_every_host_sees_the_other_hosts_without_process(accounts: PrivateMariaDB) -> None:
    create_account(accounts, SHARED_HOST, PASSWORDS[HERE])
    level, line, cli = check_while_held(accounts, PASSWORDS[HERE])
    assert level == "info"
    assert f"2 app host(s): this host {HERE}: 0, {OTHER}: {HELD}; counted the threads of account " \
           f"'{USER}'@'{SHARED_HOST}' only (no PROCESS privilege)" in line
    assert f"{OTHER}  " in cli.stdout and f"account '{USER}'@'{SHARED_HOST}' only" in cli.stdout


def test_per_host_accounts_without_process_say_the_check_cannot_see_the_tier(accounts: PrivateMariaDB) -> None:
    for host, password in PASSWORDS.items():
        create_account(accounts, host, password)
    level, line, cli = check_while_held(accounts, PASSWORDS[OTHER])
    advice = (f"counted the threads of account '{USER}'@'{HERE}' only (no PROCESS privilege), which no other host "
              f"logs in as: grant PROCESS, or use one account for every app host, to see the tier")
    assert level == "warning"
    assert f"1 app host(s): this host {HERE}: 0; {advice}" in line
    assert OTHER not in line and OTHER not in cli.stdout
    assert advice.removeprefix("counted ") in cli.stdout
    assert PASSWORDS[HERE] not in cli.stdout + cli.stderr


@pytest.mark.parametrize("granted", ["to the account", "through its default role"])
def test_per_host_accounts_with_process_count_the_other_hosts(accounts: PrivateMariaDB, granted: str) -> None:
    for host, password in PASSWORDS.items():
        create_account(accounts, host, password)
    if granted == "to the account":
        accounts.query(f"GRANT PROCESS ON *.* TO '{USER}'@'{HERE}'")
    else:
        accounts.query("CREATE ROLE tier_watcher")
        accounts.query("GRANT PROCESS ON *.* TO tier_watcher")
        accounts.query(f"GRANT tier_watcher TO '{USER}'@'{HERE}'")
        accounts.query(f"SET DEFAULT ROLE tier_watcher FOR '{USER}'@'{HERE}'")
    level, line, cli = check_while_held(accounts, PASSWORDS[OTHER])
    assert level == "info"
    assert f"2 app host(s): this host {HERE}: 0, {OTHER}: {HELD}; counted every account of user '{USER}' " \
           f"('{USER}'@'{HERE}' has PROCESS)" in line
    assert f"{OTHER}  " in cli.stdout and f"every account of user '{USER}'" in cli.stdout


def test_the_budget_command_with_a_wrong_password_says_so_in_one_line(db: PrivateMariaDB) -> None:
    wrong = "wrong-secret-pw"
    cli = subprocess.run([sys.executable, "-m", "pool", "budget", "--database-url",
                          f"mysql://app:{wrong}@127.0.0.1:{db.port}/{APP_DATABASE}", "--workers", "1",
                          "--pool-size", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    print(f"\n{cli.stderr}")
    assert cli.returncode == 2
    assert cli.stdout == "" and len(cli.stderr.splitlines()) == 1, cli.stdout + cli.stderr
    assert "refused user 'app' with this password (1045 access denied for 'app'@'127.0.0.1')" in cli.stderr
    assert "fix the user or password in --database-url (DATABASE_URL)" in cli.stderr
    assert "Traceback" not in cli.stderr and "secret" not in cli.stderr

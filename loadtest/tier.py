"""An app tier: several app hosts behind one address, as a Kubernetes Service or a TCP load balancer spreads them.

    locust -f loadtest/ --headless -u 60 -r 30 -t 30s --host http://127.0.0.1:8001 --budget-hosts 3 \
        --tier-hosts http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003 TierUser

Each user is pinned to one host (user n of a locust process to host n mod the number of hosts), as a balancer pins a
keep-alive connection. Requests are named by host (`127.0.0.1:8001 /products/`), so locust's statistics show each
host's requests and failures. When a host stops listening (drained), a user's next connect is refused: no request
reached an app, and a Service would have sent the new connection to a live endpoint; the user does so at once and
stays there. The refused connect is recorded under its own name (`127.0.0.1:8003 connect refused`), apart from the
requests that reached the host.
"""

from __future__ import annotations

import itertools
import os
import random
from typing import Any
from urllib.parse import urlsplit

import _budget  # the connection budget gate, shared by every scenario (and its LOOPBACK)
import _mix  # noqa: F401 - the default mix when no class is named
from locust import FastHttpUser, between, events, task

PRODUCTS = 100
REFUSED = "connect refused"


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--tier-hosts", default="", env_var="KIT_TIER_HOSTS",
                        help="TierUser: the app hosts' base URLs, comma-separated (default: --host alone)")


def tier_hosts(environment: Any) -> list[str]:
    listed = getattr(environment.parsed_options, "tier_hosts", "") or ""
    hosts = [h.strip().rstrip("/") for h in listed.split(",") if h.strip()]
    return hosts or [str(environment.host).rstrip("/")]


@events.init.add_listener
def _loopback_only(environment: Any, **_: Any) -> None:
    if environment.parsed_options is None or os.environ.get("KIT_ALLOW_REMOTE_LOAD") == "1":
        return
    for base in tier_hosts(environment):
        host = urlsplit(base).hostname
        if host and host not in _budget.LOOPBACK:
            raise SystemExit(f"refusing to send load to {host} (--tier-hosts): the kit's scenarios target loopback "
                             f"only (set KIT_ALLOW_REMOTE_LOAD=1 for a staging host you own)")


def _label(base: str) -> str:
    return urlsplit(base).netloc


class TierUser(FastHttpUser):
    """Reads and reports against one host of --tier-hosts; moves to the next when its host stops listening."""

    opt_in = True
    wait_time = between(0.05, 0.2)
    _numbers = itertools.count()

    def on_start(self) -> None:
        hosts = tier_hosts(self.environment)
        first = next(TierUser._numbers) % len(hosts)
        self.hosts = hosts[first:] + hosts[:first]

    def _get(self, path: str, name: str) -> None:
        while True:
            base = self.hosts[0]
            with self.client.get(base + path, name=f"{_label(base)} {name}", catch_response=True) as response:
                refused = isinstance(getattr(response, "error", None), ConnectionRefusedError)
                if refused and len(self.hosts) > 1:
                    response.request_meta["name"] = f"{_label(base)} {REFUSED}"
                    self.hosts.pop(0)
                    continue
                if response.status_code == 503:
                    response.failure(f"503 pool busy (Retry-After {response.headers.get('Retry-After')})")
            return

    @task(3)
    def detail(self) -> None:
        self._get(f"/products/{random.randint(1, PRODUCTS)}/", "/products/[id]/")

    @task(1)
    def listing(self) -> None:
        self._get("/products/", "/products/")

    @task(2)
    def report(self) -> None:
        self._get("/report/slow/", "/report/slow/")

"""Host lists (`db1:3307,db2,[::1]:3308`), as DATABASE_URL and Django's HOST write them: parsed once, strictly, into
`Host`s, and the order in which a connect tries them.

One parser for every place a list is written, so that a typo is an error naming that place wherever it is made: a bad
port never quietly becomes 3306.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from .abc import Clock
from .backoff import Backoff, Streak
from .errors import ConfigError

DEFAULT_PORT = 3306
_LIST_SHAPE = ("expected host, host:port or [IPv6 address]:port, several separated by commas: "
               "db1:3307,db2,[::1]:3308")

# A host that failed is skipped this long, doubling per failure up to the cap, so that a dead node costs one attempt
# per back-off and not one per connect (a blackholed host would cost connect_timeout each time). No jitter: the order
# of a list is this process's own business, and a skipped host costs no other process anything.
HOST_BACKOFF = Backoff(first=1.0, cap=10.0)


class Host(NamedTuple):
    name: str
    port: int

    @property
    def label(self) -> str:
        """`db1:3307`, `[::1]:3307`: how messages and Django's HOST write it."""
        return f"[{self.name}]:{self.port}" if ":" in self.name else f"{self.name}:{self.port}"


def split_hosts(text: str, *, source: str, fix: str = _LIST_SHAPE,
                bracketless_ipv6: bool = True) -> list[tuple[str, int | None]]:
    """The entries of a host list as written, None where no port is: ConfigError naming `source` and `fix`
    otherwise. The message never repeats the text (in a mangled DATABASE_URL it may hold a piece of the password).

    `bracketless_ipv6`: whether an IPv6 address may stand without brackets (and then without a port), as Django's
    HOST takes `::1`; a URL must write `[::1]`.
    """
    entries = [_split_entry(part.strip(), source, fix, bracketless_ipv6) for part in text.split(",")]
    if len(entries) > 1 and not all(name for name, _ in entries):
        raise _fail("has an empty host in its host list", source, fix)
    return entries


def _split_entry(entry: str, source: str, fix: str, bracketless_ipv6: bool) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:3306
        end = entry.find("]")
        if end < 0:
            raise _fail("has an IPv6 host without its closing ']'", source, fix)
        name, rest = entry[1:end], entry[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _fail("has text after the IPv6 host that is not a :port", source, fix)
        raw_port = rest[1:]
    elif entry.count(":") > 1:
        if not (bracketless_ipv6 and _is_ipv6(entry)):
            raise _fail("has more than one ':' in host:port", source, fix)
        name, raw_port = entry, ""
    else:
        name, _, raw_port = entry.partition(":")
    if raw_port == "":
        return name, None
    port = _port(raw_port)
    if port is None:  # the value is not repeated: see split_hosts
        raise _fail("has a port that is not a number from 1 to 65535", source, fix)
    return name, port


def _port(raw: object) -> int | None:
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        return None
    return int(text)


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _fail(problem: str, source: str, fix: str) -> ConfigError:
    return ConfigError(f"{source} {problem} ({fix})")


class HostList(tuple[Host, ...]):
    """The servers of one database, in the order a connect tries them."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str, default_port: int = DEFAULT_PORT, *, source: str = "HOST",
              fix: str = _LIST_SHAPE) -> HostList:
        """`text` as Django's HOST takes it; an entry without a port gets `default_port`."""
        return cls(Host(name, default_port if port is None else port)
                   for name, port in split_hosts(text, source=source, fix=fix))

    @classmethod
    def from_connect_kwargs(cls, kwargs: Mapping[str, Any]) -> HostList:
        """The hosts of PyMySQL connect() arguments whose `host` may be a list (Django's HOST), and whose `port`
        (Django's PORT) is the port of every entry that names none. PyMySQL's defaults stand in for what is unset."""
        given = kwargs.get("port")
        default_port = _port(given) if given else DEFAULT_PORT  # 0 and "": unset, as PyMySQL takes them
        if default_port is None:
            raise _fail("is not a number from 1 to 65535", "PORT", "expected the TCP port of the server, e.g. 3306")
        return cls.parse(str(kwargs.get("host") or "localhost"), default_port)

    def format(self) -> str:
        """The list as one string, as Django's HOST holds it: `db1:3307,db2:3306,[::1]:3308`."""
        return ",".join(host.label for host in self)


class HostBackoff:
    """Which hosts of a list a connect tries, in order: as listed, but one that failed is skipped for its back-off,
    unless every host is backing off; then the one whose back-off ends first is tried."""

    def __init__(self, hosts: HostList, clock: Clock = time.monotonic, backoff: Backoff = HOST_BACKOFF) -> None:
        self.hosts = hosts
        self._streaks: dict[Host, Streak] = {}  # the hosts that failed the last time they were tried
        self._clock = clock
        self._backoff = backoff

    @property
    def failures(self) -> dict[Host, int]:
        """Failures in a row, of the hosts that failed the last time they were tried."""
        return {host: streak.failures for host, streak in self._streaks.items()}

    def order(self) -> list[Host]:
        now = self._clock()
        ready = [host for host in self.hosts if self._retry_at(host) <= now]
        return ready or sorted(self.hosts, key=self._retry_at)[:1]

    def _retry_at(self, host: Host) -> float:
        streak = self._streaks.get(host)
        return streak.retry_at if streak is not None else float("-inf")

    def failed(self, host: Host) -> tuple[int, float]:
        """Count a failure of `host`: (its failures in a row, its back-off in seconds)."""
        streak = self._streaks.setdefault(host, Streak(self._backoff))
        delay = streak.failed(self._clock())
        return streak.failures, delay

    def answered(self, host: Host) -> bool:
        """`host` connected: forget its failures. True if it had failed before (it answers again)."""
        streak = self._streaks.pop(host, None)
        return streak is not None and streak.clear() > 0

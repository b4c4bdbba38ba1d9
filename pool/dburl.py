"""DATABASE_URL (mysql://user:password@host:port/name?opt=value) to PyMySQL arguments, with no Django involved.

The parser is strict on purpose: a password with an unencoded `@`, `/`, `?`, `#` or `%` makes a generic URL parser put
part of the password into the host or the path, where it ends up in log lines. Every error message here names the
part that is wrong and how to fix it, and never repeats the URL or any piece of the credentials.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from .errors import ConfigError
from .hosts import DEFAULT_PORT, Host, HostList, split_hosts

SCHEMES = ("mysql", "mariadb", "mysql+pymysql")
_SHAPE = "mysql://user:password@host:3306/name"
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FIX = (f"expected {_SHAPE}, with reserved characters in the user and password percent-encoded, "
        f"e.g. urllib.parse.quote(password, safe='')")


def _fail(problem: str, source: str) -> ConfigError:
    return ConfigError(f"{source} {problem} ({_FIX})")


def parse_database_url(url: str, source: str = "DATABASE_URL") -> dict[str, Any]:
    """PyMySQL connect() arguments (`host`, `port`, `user`, `password`, `database`, maybe `unix_socket`) plus
    `options` (the query string) for `url`; ConfigError naming the malformed part otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise _fail("is empty", source)
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _fail("does not start with a scheme such as mysql://", source)
    if scheme.lower() not in SCHEMES:
        raise _fail(f"has the scheme {scheme[:20]!r}; use one of {', '.join(s + '://' for s in SCHEMES)}", source)

    # Where the authority ends by the URL rules: at the first '/', '?' or '#'.
    authority_end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    if authority.count("@") > 1:
        raise _fail("has more than one '@' before the host: the user or password contains an unencoded '@' "
                    "(write it as %40)", source)
    if "#" in rest:
        raise _fail("contains a '#', which no database URL uses: an unencoded '#' in the user, password or name "
                    "(write it as %23)", source)
    path_part, _, query_part = tail.partition("?")
    if "@" in path_part or ("@" in query_part and "@" not in authority):
        # 'user:pa/ss@host': the authority ended inside the password.
        raise _fail("has an '@' after a '/' or '?': the user or password contains one of those unencoded "
                    "(write '/' as %2F, '?' as %3F, '@' as %40)", source)
    userinfo, _, hostport = authority.rpartition("@")
    if _BAD_PERCENT.search(userinfo):
        raise _fail("has a '%' in the user or password that is not followed by two hex digits: an unencoded '%' "
                    "(write it as %25)", source)
    user, _, password = userinfo.partition(":")

    # A host list (h1:3306,h2:3306) for failover: the pool's driver tries them in order.
    hosts = split_hosts(hostport, source=source, fix=_FIX, bracketless_ipv6=False)
    host, port = hosts[0]
    path, query = path_part, query_part
    database = unquote(path.lstrip("/"))
    if "/" in database:
        raise _fail("has more than one '/' after the host; the path is the database name alone", source)

    options = dict(parse_qsl(query, keep_blank_values=True))
    if len(hosts) > 1:
        # One string, as Django's HOST holds it; the driver parses it again with pool.hosts, at its construction.
        host = HostList(Host(h, DEFAULT_PORT if p is None else p) for h, p in hosts).format()
        port = None
    kwargs: dict[str, Any] = {"host": host or "localhost", "user": unquote(user), "password": unquote(password),
                              "database": database}
    if port is not None:
        kwargs["port"] = port
    if "unix_socket" in options:
        kwargs["unix_socket"] = options.pop("unix_socket")
    elif not host:
        raise _fail("has no host", source)
    kwargs["options"] = options
    return kwargs


def connect_kwargs_from_url(url: str) -> dict[str, Any]:
    """PyMySQL connect() arguments for DATABASE_URL, its ?options included (for code without Django)."""
    kwargs = parse_database_url(url)
    options = kwargs.pop("options")
    return {**kwargs, **options}


def redact(url: str) -> str:
    """`url` with the password replaced, for messages that must show which URL was meant."""
    try:
        kwargs = parse_database_url(url)
    except ConfigError:
        return "<a malformed DATABASE_URL>"
    where = kwargs.get("unix_socket") or f"{kwargs['host']}:{kwargs.get('port', 3306)}"
    return f"mysql://{kwargs['user']}:***@{where}/{kwargs['database']}"

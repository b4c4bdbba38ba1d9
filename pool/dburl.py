"""DATABASE_URL (mysql://user:password@host:port/name?opt=value) to PyMySQL arguments, with no Django involved."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigError


def parse_database_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ConfigError(
            f"DATABASE_URL must look like mysql://user:password@host:port/name (scheme {parts.scheme or 'missing'!r})"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("DATABASE_URL has a port that is not a number") from None
    kwargs: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")),
    }
    if port:
        kwargs["port"] = port
    options = dict(parse_qsl(parts.query))
    if "unix_socket" in options:
        kwargs["unix_socket"] = options.pop("unix_socket")
    kwargs["options"] = options
    return kwargs


def connect_kwargs_from_url(url: str) -> dict[str, Any]:
    """PyMySQL connect() arguments for DATABASE_URL, its ?options included (for code without Django)."""
    kwargs = parse_database_url(url)
    options = kwargs.pop("options")
    return {**kwargs, **options}

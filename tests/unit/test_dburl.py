"""DATABASE_URL parsing: every malformed part gets its own message, and no message carries any piece of a password."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from pool import ConfigError
from pool.dburl import connect_kwargs_from_url, parse_database_url, redact

NASTY = "p@ss:w/rd%?#&="  # every character that means something in a URL


def test_an_encoded_password_with_every_reserved_character_round_trips() -> None:
    url = f"mysql://app:{quote(NASTY, safe='')}@127.0.0.1:3307/shop?charset=utf8mb4"
    kwargs = parse_database_url(url)
    assert (kwargs["user"], kwargs["password"], kwargs["host"], kwargs["port"], kwargs["database"]) == (
        "app", NASTY, "127.0.0.1", 3307, "shop")
    assert kwargs["options"] == {"charset": "utf8mb4"}
    assert "p@ss" not in redact(url) and "***" in redact(url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"mysql://app:{NASTY}@127.0.0.1:3306/app", "unencoded '#'"),
        ("mysql://app:p@ss@127.0.0.1:3306/app", "more than one '@'"),
        ("mysql://app:pa/ss@127.0.0.1:3306/app", "'@' after a '/'"),
        ("mysql://app:pa?ss@127.0.0.1:3306/app", "'@' after a '/'"),
        ("mysql://app:pa#ss@127.0.0.1:3306/app", "'#'"),
        ("mysql://app:p@ss:w/rd%@127.0.0.1:3306/app", "unencoded"),
        ("mysql://app:pa%zzss@127.0.0.1:3306/app", "unencoded '%'"),
        ("mysql://app:secretpw@127.0.0.1:99999/app", "port that is not a number from 1 to 65535"),
        ("mysql://app:secretpw@127.0.0.1:33o6/app", "port that is not a number from 1 to 65535"),
        ("mysql://app:secretpw@127.0.0.1:3306,db2:33o6/app", "port that is not a number from 1 to 65535"),
        ("mysql://app:secretpw@127.0.0.1:3306,,db2/app", "empty host in its host list"),
        ("mysql://app:secretpw@::1/app", "more than one ':'"),
        ("postgres://app:secretpw@127.0.0.1/app", "scheme"),
        ("app:secretpw@127.0.0.1/app", "does not start with a scheme"),
        ("mysql://app:secretpw@/app", "no host"),
        ("", "is empty"),
    ],
)
def test_each_malformed_part_is_named_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_database_url(url)
    message = str(caught.value)
    assert says in message
    assert message.startswith("DATABASE_URL ")
    for secret in ("p@ss", "pa/ss", "pa?ss", "pa#ss", "pa%zz", "secretpw", "ss@127", "w/rd"):
        assert secret not in message


def test_unix_socket_and_ipv6_hosts() -> None:
    kwargs = connect_kwargs_from_url("mysql://app:pw@localhost/app?unix_socket=/run/mysqld/mysqld.sock")
    assert kwargs["unix_socket"] == "/run/mysqld/mysqld.sock"
    assert parse_database_url("mysql://app:pw@[::1]:3307/app")["host"] == "::1"

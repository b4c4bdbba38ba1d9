"""One request to a Django WSGI app in this process, as gunicorn's gevent worker serves it (for the test scripts that
run the site in a patched interpreter of their own, a new greenlet per request)."""

from __future__ import annotations

import json
from typing import Any
from wsgiref.util import setup_testing_defaults


def get(app: Any, path: str, read_slowly: float = 0.0) -> tuple[str, bytes]:
    """GET `path` (with its ?query); the status line and the body, read chunk by chunk, `read_slowly` seconds apart
    (a slow client). Closing the response fires request_finished, as a WSGI server does."""
    path, _, query = path.partition("?")
    environ = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": "GET", "HTTP_HOST": "127.0.0.1"}
    setup_testing_defaults(environ)
    status: list[str] = []
    result = app(environ, lambda s, h, exc_info=None: status.append(s))
    chunks = []
    try:
        for chunk in result:
            chunks.append(chunk)
            if read_slowly:
                import gevent

                gevent.sleep(read_slowly)
    finally:
        result.close()
    return status[0], b"".join(chunks)


def body_of(body: bytes) -> Any:
    """A JSON body as data, anything else as the start of its text."""
    return json.loads(body) if body.startswith(b"{") else body.decode()[:300]

"""Work beside the application, in the process that runs it: a greenlet once gevent has patched threading (so it
yields to the hub and never blocks it), a daemon thread otherwise (so it never keeps the process alive)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any


def gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def start_background(target: Callable[[], None], name: str) -> Any:
    """Start `target` now; returns the greenlet or the thread. Decided at call time, not at import: a pool built
    before monkey-patching must still run cooperatively after it."""
    if gevent_patched():
        import gevent

        return gevent.spawn(target)
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread

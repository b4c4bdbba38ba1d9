"""The default mix: `locust -f loadtest/` with no user classes named runs every class except those marked `opt_in`
(benchmarks, the spike and the chaos monkey), which run only when named, e.g. `locust -f loadtest/ SpikeUser`, or
picked in the web UI under `--class-picker`. Imported by every scenario file, like the gate."""

from __future__ import annotations

from typing import Any

from locust import events


@events.init.add_listener
def _default_mix(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is None or options.user_classes or getattr(options, "class_picker", False):
        return
    chosen = [user for user in environment.user_classes if not getattr(user, "opt_in", False)]
    if chosen:
        environment.user_classes[:] = chosen

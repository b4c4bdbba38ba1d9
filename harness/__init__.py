"""Infrastructure for the demo, the tests and the benchmarks: private database servers, a real gunicorn, load clients.

Nothing in `pool/` imports it; it may import `pool` and, for the demo, nothing of `tests/` or `bench/`.
"""

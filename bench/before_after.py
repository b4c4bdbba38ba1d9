"""bench/checkout.py on an earlier commit and on this tree, taking turns, so that a refactor's cost on the hot path is
measured against the same machine at the same time:

    .venv/bin/python -m bench.before_after REV [--rounds 6] [--n 20000] [--repeat 5]

REV is checked out into a temporary git worktree (removed at the end); each round runs the benchmark there, then here,
with this tree's interpreter. Prints each variant's best and median µs per cycle over the rounds, before and after.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_ROW = re.compile(r"(?P<label>.*?)\s+(?P<us>[\d.]+)\s+(?P<trips>[\d.]+)$")


def _run(tree: Path, n: int, repeat: int) -> dict[str, tuple[float, float]]:
    out = subprocess.run([sys.executable, "-m", "bench.checkout", "--n", str(n), "--repeat", str(repeat)], cwd=tree,
                         capture_output=True, text=True, timeout=1800, check=True).stdout
    rows = {}
    for line in out.splitlines()[1:]:
        match = _ROW.match(line)
        if match:
            rows[match["label"].strip()] = (float(match["us"]), float(match["trips"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev", help="the commit to compare with, e.g. main~3")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="kit-before-") as scratch:
        before = Path(scratch) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(before), args.rev], cwd=ROOT, check=True)
        try:
            for round_no in range(1, args.rounds + 1):
                print(f"round {round_no}/{args.rounds}", file=sys.stderr)
                runs["before"].append(_run(before, args.n, args.repeat))
                runs["after"].append(_run(ROOT, args.n, args.repeat))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)
    print(f"bench/checkout.py, µs per cycle over {args.rounds} rounds each, {args.rev} (before) and this tree (after)")
    print(f"{'variant':52} {'before best':>11} {'median':>7} {'after best':>10} {'median':>7} {'trips':>6}")
    for label in runs["after"][0]:
        before_us = [run[label][0] for run in runs["before"] if label in run]
        after_us = [run[label][0] for run in runs["after"]]
        if not before_us:
            print(f"{label:52} {'(new)':>11} {'':>7} {min(after_us):10.2f} {statistics.median(after_us):7.2f}")
            continue
        print(f"{label:52} {min(before_us):11.2f} {statistics.median(before_us):7.2f} {min(after_us):10.2f} "
              f"{statistics.median(after_us):7.2f} {runs['after'][0][label][1]:6.2f}")


if __name__ == "__main__":
    main()

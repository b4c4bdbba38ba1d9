"""python -m pool budget ...: see pool.budget.main."""

import sys

from .budget import main

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "budget":
        sys.exit("usage: python -m pool budget [--database-url URL] [--conf gunicorn.conf.py] [--hosts N] ...")
    sys.exit(main(sys.argv[2:]))

"""Conformance jobs: suites we did not write, run on the stock stack and on the kit's, compared per test."""

"""Builders the tests, API tests and benchmarks share: synthetic data, small bundles, and the
service run as a real process. Not part of the product: nothing in bundle/, training/, index/
or service/ imports it."""

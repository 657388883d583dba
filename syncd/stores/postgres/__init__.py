"""Postgres record store (issue 11, architecture §8.1), on psycopg 3.

`url` checks `postgresql://` URLs without importing psycopg, so the config loads without the
extra; `store` (the RecordStore), `catalog`, `values` and `where` import it and are loaded
only when a Postgres environment is opened (syncd/stores/__init__.py).
"""

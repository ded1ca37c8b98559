"""The demo fleet: real pools against a real PostgreSQL, each exporting its pool's metrics.

`fleet` describes the services and their scrape targets and is safe to import anywhere; the rest
opens connections and is only loaded by `python -m poolboard.demo`.
"""

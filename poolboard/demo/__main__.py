"""`python -m poolboard.demo`: run the demo fleet, or print its scrape targets / prometheus.yml."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from poolboard.demo.fleet import prometheus_config, scrape_targets

DEFAULT_BASE_PORT = 9201


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m poolboard.demo",
        description="Run the demo fleet (real pools against PostgreSQL, each with a /metrics port).",
    )
    parser.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, help="first exporter port")
    parser.add_argument(
        "--database-url",
        help="demo database (default: $DEMO_DATABASE_URL or postgresql://root@127.0.0.1:5432/poolboard_demo)",
    )
    parser.add_argument("--fast", action="store_true", help="shorten the leak cycle (for tests)")
    commands = parser.add_subparsers(dest="command", metavar="{targets,prometheus-config}")
    # SUPPRESS keeps a sub-command's defaults from overwriting a --base-port given before it.
    targets = commands.add_parser("targets", help="print the scrape targets as JSON")
    targets.add_argument("--base-port", type=int, default=argparse.SUPPRESS)
    config = commands.add_parser("prometheus-config", help="print a prometheus.yml scraping the fleet")
    config.add_argument("--base-port", type=int, default=argparse.SUPPRESS)
    config.add_argument("--scrape-interval", default="5s")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "targets":
            print(json.dumps(scrape_targets(args.base_port), indent=2))
            return 0
        if args.command == "prometheus-config":
            sys.stdout.write(prometheus_config(args.base_port, args.scrape_interval))
            return 0
    except ValueError as exc:
        parser.error(str(exc))

    # Only the fleet itself needs the drivers; the two printing commands stay light.
    from poolboard.demo.database import default_database_url, parse_database_url
    from poolboard.demo.runner import run_fleet
    from poolboard.demo.scenarios import FAST_TIMINGS, NORMAL_TIMINGS

    try:
        scrape_targets(args.base_port)  # checks the port range before anything starts
        database = parse_database_url(args.database_url or default_database_url())
    except ValueError as exc:
        parser.error(str(exc))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # psycopg_pool logs every checkout at INFO.
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
    return run_fleet(database, args.base_port, FAST_TIMINGS if args.fast else NORMAL_TIMINGS)


if __name__ == "__main__":
    sys.exit(main())

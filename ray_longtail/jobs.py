"""Shared body of the `jobs/*.py` entry points: parse the common arguments, connect to the cluster the job
runs on, run the named stages, print a JSON summary (last line: the run directory)."""

from __future__ import annotations

import json
import logging
import sys

from ray_longtail import pipeline
from ray_longtail.cli import common_parser, config_from_args
from ray_longtail.errors import UserError
from ray_longtail.runtime import ray_session


def run_job(stages: list[str] | None, argv: list[str]) -> int:
    """Run `stages` (None = the whole pipeline) with CLI-style arguments; exit code 2 on user errors."""
    args = common_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        with ray_session(config.ray):
            store = pipeline.run_stages(config, only=stages, force=args.force)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manifest = store.manifest()
    print(json.dumps({"run": store.uri, "stages": {k: v["summary"] for k, v in manifest["stages"].items()}},
                     default=str))
    print(store.uri)
    return 0

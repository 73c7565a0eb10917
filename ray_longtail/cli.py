"""`ray-longtail` command line: parses arguments, builds the config, calls the library. No logic here."""

from __future__ import annotations

import argparse
import logging
import sys

from ray_longtail.config import FEEDBACK_EVENT_TYPES, Config, load_config
from ray_longtail.errors import UserError

STAGE_COMMANDS = {"ingest": "ingest", "split": "split", "finetune": "finetune", "embed": "embed",
                  "discover": "discover", "profile": "profile", "retrieve": "retrieve", "features": "features",
                  "train": "rank", "precompute": "serving", "evaluate": "evaluate", "run": None}


def common_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--items", help="catalog file or URI (Parquet/CSV); default: bundled dataset")
    parser.add_argument("--interactions", help="interactions file or URI (Parquet/CSV)")
    parser.add_argument("--artifacts", help="artifacts directory or URI (default from config: artifacts)")
    parser.add_argument("--run-id", help="run folder name (default: <dataset>-<hash of inputs and config>)")
    parser.add_argument("--config", help="YAML config (default: the packaged configs/default.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set embed.batch_size=128 (repeatable)")
    parser.add_argument("--events", metavar="STORE",
                        help="fold logged events (a run folder's events/ or a folder/URI of POST /events segments) "
                             "into the interactions: feedback.events")
    parser.add_argument("--force", action="store_true", help="recompute the stage even if its outputs exist")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and the result")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ray-longtail", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    common = common_parser()
    helps = {"run": "the whole pipeline", "ingest": "read, validate and clean the inputs",
             "split": "temporal train/valid/test split",
             "finetune": "contrastive fine-tuning of the encoder on co-interactions (Ray Train)",
             "embed": "item embeddings on Ray Data",
             "discover": "popularity segments and embedding clusters", "profile": "user vectors",
             "retrieve": "multi-source candidates", "features": "ranker features per (user, candidate)",
             "train": "learning-to-rank with Ray Train",
             "precompute": "serving lists: every recent history user's ranked candidates for the Serve app",
             "evaluate": "metrics and report of the test window"}
    for name in STAGE_COMMANDS:
        commands.add_parser(name, parents=[common], help=helps.get(name, name))
    synth = commands.add_parser("synth", help="write a synthetic long-tail shop in the data contract")
    synth.add_argument("--out", required=True, help="output folder (items.<fmt>, interactions.<fmt>)")
    synth.add_argument("--profile", choices=["retail", "magazines"], default="retail",
                       help="kind of shop: retail (purchases, 5000 items, 1 year) or magazines (Amazon-style ratings, "
                            "2500 items, 17 years, list-valued columns); the flags below override its defaults")
    synth.add_argument("--n-items", type=int, help="default: the profile's")
    synth.add_argument("--interactions-per-item", type=float, help="default: the profile's")
    synth.add_argument("--event", choices=["purchase", "rating"], help="default: the profile's")
    synth.add_argument("--format", choices=["parquet", "csv"], default="parquet",
                       help="parquet keeps list columns as Arrow lists; csv joins each list into one string "
                            "(category with ' > ', description paragraphs and also_buy/also_view ids with a space)")
    synth.add_argument("--seed", type=int, default=0)
    tune = commands.add_parser("tune", parents=[common], help="Ray Tune + Optuna search on the valid window")
    tune.add_argument("--num-samples", type=int, help="trials (default: tune.num_samples)")
    recommend = commands.add_parser("recommend", help="top-k lists of a finished run for given users (JSON lines)")
    recommend.add_argument("--run", default="latest", help="run folder or URI; 'latest' = newest under artifacts/")
    recommend.add_argument("--user", action="append", required=True, help="user id (repeatable)")
    recommend.add_argument("-k", type=int, default=10)
    recommend.add_argument("--tail-weight", type=float, help="default: the run's selected tail_weight")
    recommend.add_argument("-q", "--quiet", action="store_true", help="only warnings")
    serve = commands.add_parser("serve", help="HTTP app over one finished run (Ray Serve; OpenAPI at /docs)")
    serve.add_argument("--run", default="latest",
                       help="run folder or URI; 'latest' or DIR/latest = the newest finished run under artifacts/ "
                            "or DIR (default: latest)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    serve.add_argument("--set", action="append", default=[], metavar="serve.KEY=VALUE",
                       help="a serve.* setting over the run's config (repeatable), e.g. serve.cache_users=10000")
    serve.add_argument("--serve-config", metavar="YAML",
                       help="Serve config whose env vars and deployment options to use (default: the packaged "
                            "serve_config.yaml)")
    serve.add_argument("--allow-open-writes", action="store_true",
                       help="serve on a non-loopback --host although POST /items needs no token "
                            "(serve.api_token_env unset)")
    serve.add_argument("-q", "--quiet", action="store_true", help="only warnings")
    add_loop_commands(commands)
    return parser


def add_loop_commands(commands) -> None:
    """The online loop: refresh a run with logged events, replay a test window as traffic, the A/B report."""
    refresh = commands.add_parser("refresh", help="a new run serving a finished run's model over its history plus "
                                                  "logged events (no retraining); redeploy the app to serve it")
    refresh.add_argument("--run", default="latest", help="the finished run to refresh (default: latest)")
    refresh.add_argument("--events", required=True, metavar="STORE",
                         help="events store: a run folder (its events/) or a folder/URI of event segments")
    refresh.add_argument("--out", help="the new run's folder or URI (default: <run>-refresh-<UTC time> beside it)")
    refresh.add_argument("--event-type", action="append", dest="event_types", metavar="TYPE",
                         choices=FEEDBACK_EVENT_TYPES,
                         help="events that count as interactions (repeatable; default: the run's "
                              "feedback.event_types)")
    refresh.add_argument("-q", "--quiet", action="store_true", help="only warnings and the result")
    replay = commands.add_parser("replay", help="replay a run's test window as traffic against a running app "
                                                "(/recommend, then impressions and clicks to /events)")
    replay.add_argument("--run", default="latest", help="run whose test window to replay (default: latest)")
    replay.add_argument("--url", default="http://127.0.0.1:8000", help="the app (default: http://127.0.0.1:8000)")
    replay.add_argument("-k", type=int, default=10, help="items per answer (default: 10)")
    replay.add_argument("--max-users", type=int, help="a seeded sample of the test users (default: all)")
    replay.add_argument("--concurrency", type=int, default=4, help="parallel requests (default: 4)")
    replay.add_argument("--token-env", metavar="VAR", help="environment variable with the app's write token")
    replay.add_argument("-q", "--quiet", action="store_true", help="only warnings and the result")
    enrich = commands.add_parser("enrich", help="predict the empty categories of a catalog from its item texts "
                                                "(cross-validated against the majority class)")
    enrich.add_argument("--items", required=True, help="catalog file or URI (Parquet/CSV)")
    enrich.add_argument("--out", required=True, help="output Parquet: item_id, category, category_inferred, "
                                                     "category_confidence, category_source")
    enrich.add_argument("--config", help="YAML config (embed.model, discover.enrich_*)")
    enrich.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    enrich.add_argument("-q", "--quiet", action="store_true", help="only warnings and the result")
    report = commands.add_parser("ab-report", help="per-variant CTR, conversion, tail share and revenue of logged "
                                                   "events, with confidence intervals and significance tests")
    report.add_argument("--events", required=True, metavar="STORE", help="events store (run folder or folder/URI)")
    report.add_argument("--run", help="run whose segments and prices to use (default: none)")
    report.add_argument("--control", help="the control variant (default: the first by name)")
    report.add_argument("--out", help="folder for ab_report.json/.md/.png (default: <run>/ab_report or ./ab_report)")
    report.add_argument("-q", "--quiet", action="store_true", help="only warnings and the result")


def config_from_args(args: argparse.Namespace) -> Config:
    extra: dict = {}
    if args.items or args.interactions:
        extra["data"] = {"items": args.items, "interactions": args.interactions}
    if args.artifacts:
        extra["artifacts"] = args.artifacts
    if args.run_id:
        extra["run_id"] = args.run_id
    if args.events:
        extra["feedback"] = {"events": args.events}
    return load_config(args.config, overrides=args.overrides, extra=extra)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if level > logging.INFO:
        for name in ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve"):
            logging.getLogger(name).setLevel(level)
    try:
        return dispatch(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def dispatch(args: argparse.Namespace) -> int:
    from ray_longtail import pipeline

    if args.command == "serve":
        from ray_longtail.serve.launch import serve_forever

        serve_forever(args.run, host=args.host, port=args.port, overrides=args.set,
                      serve_config=args.serve_config, allow_open_writes=args.allow_open_writes)
        return 0
    if args.command == "recommend":
        import json

        from ray_longtail.artifacts import resolve_run
        from ray_longtail.serve.recommender import Recommender

        recommender = Recommender(resolve_run(args.run))
        for user in args.user:
            print(json.dumps(recommender.recommend(user, k=args.k, tail_weight=args.tail_weight)))
        return 0
    if args.command in LOOP_COMMANDS:
        return LOOP_COMMANDS[args.command](args)
    if args.command == "synth":
        from ray_longtail.data.synthetic import write_shop

        paths = write_shop(args.out, fmt=args.format, n_items=args.n_items, seed=args.seed, event=args.event,
                           interactions_per_item=args.interactions_per_item, profile=args.profile)
        print("\n".join(paths))
        return 0
    config = config_from_args(args)
    if args.command == "tune":
        from ray_longtail.tune_run import run_tune

        print(run_tune(config, num_samples=args.num_samples))
        return 0
    stage = STAGE_COMMANDS[args.command]
    from ray_longtail.report import print_summary

    store = pipeline.run_stages(config, until=None, only=[stage] if stage else None, force=args.force)
    print_summary(store, args.command)
    print(store.uri)
    return 0


def refresh_command(args: argparse.Namespace) -> int:
    import json

    from ray_longtail.artifacts import resolve_run
    from ray_longtail.feedback import refresh_run

    store, summary = refresh_run(resolve_run(args.run), args.events, out=args.out, event_types=args.event_types)
    print(json.dumps({key: summary[key] for key in ("feedback_rows", "became_warm", "segments", "seconds")}))
    print(store.uri)
    return 0


def replay_command(args: argparse.Namespace) -> int:
    import json
    import os

    from ray_longtail.artifacts import resolve_run
    from ray_longtail.replay import replay

    token = os.environ.get(args.token_env) if args.token_env else None
    if args.token_env and not token:
        raise UserError(f"--token-env {args.token_env}: that environment variable is not set")
    print(json.dumps(replay(resolve_run(args.run), args.url, k=args.k, token=token, max_users=args.max_users,
                            concurrency=args.concurrency)))
    return 0


def ab_report_command(args: argparse.Namespace) -> int:
    from ray_longtail.abtest import write_ab_report
    from ray_longtail.artifacts import resolve_run

    _, markdown = write_ab_report(args.events, resolve_run(args.run) if args.run else None, args.control, args.out)
    print(markdown)
    return 0


def enrich_command(args: argparse.Namespace) -> int:
    import json

    from ray_longtail.enrich import enrich_file

    print(json.dumps(enrich_file(args.items, args.out, load_config(args.config, overrides=args.overrides))))
    return 0


LOOP_COMMANDS = {"refresh": refresh_command, "replay": replay_command, "ab-report": ab_report_command,
                 "enrich": enrich_command}


if __name__ == "__main__":
    raise SystemExit(main())

"""The `batchmt` command line: run, plan, status, verify, score, report, quantize, submit.

Exit codes: 0 success; 1 the job ran but did not complete (failed shards, verify found
problems); 2 the job could not start (bad config, bad input, output conflict).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from batchmt.pipeline.logs import configure_logging

EXIT_INCOMPLETE, EXIT_UNUSABLE = 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchmt", description="Distributed batch translation of Parquet corpora on Ray."
    )
    parser.add_argument("--log-level", default=os.environ.get("BATCHMT_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("config", help="job config (YAML)")
        cmd.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set decoding.num_beams=2 (repeatable)",
        )
        cmd.add_argument(
            "--set-file",
            dest="overrides_file",
            metavar="PATH",
            help="a JSON list of KEY=VALUE overrides, applied before --set (batchmt submit "
            "passes its --set values this way, off the command line)",
        )
        return cmd

    run = with_config("run", "run a job (resumes a previous run of the same spec)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    with_config("plan", "print the shard plan without translating")
    verify = with_config("verify", "check every input id appears exactly once in the output")
    verify.add_argument("--json", action="store_true", help="print JSON instead of a report")
    status = sub.add_parser("status", help="shards done/pending, rows, errors, quality")
    status.add_argument("output", help="the job's output.path")
    status.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    status.add_argument("--json", action="store_true", help="print JSON instead of a report")
    score = with_config("score", "score the translations an input already holds (no translating)")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    report = sub.add_parser("report", help="one self-contained HTML report of a run or score")
    report.add_argument("output", help="the job's output.path")
    report.add_argument("--out", help="where to write the HTML (default OUTPUT/report.html)")
    report.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    quantize = with_config("quantize", "per-layer mixed-precision weights under a size budget")
    quantize.add_argument("--no-progress", action="store_true", help="no progress bar")
    submit = with_config("submit", "run the job on a Ray cluster through the Ray Jobs API")
    submit.add_argument("--address", required=True, help="Ray dashboard, e.g. http://head:8265")
    submit.add_argument("--no-wait", action="store_true", help="return after submitting")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    # Imported here so `batchmt --help` stays fast (Ray and torch take seconds to import).
    from batchmt.jobs import commands

    try:
        return int(commands.dispatch(args))
    except commands.USER_ERRORS as exc:
        print(f"batchmt {args.command}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except commands.JobFailed as exc:
        print(f"batchmt {args.command}: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print(
            f"batchmt {args.command}: interrupted; committed shards are kept and a rerun resumes",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())

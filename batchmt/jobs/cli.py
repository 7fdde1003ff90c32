"""The `batchmt` command line: run, plan, status, verify, score, report, quantize, submit.

Exit codes: 0 success; 1 the job ran but did not complete (failed shards, verify found
problems); 2 the job could not start (bad config, bad input, output conflict).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from batchmt import __version__
from batchmt.pipeline.logs import FORMAT_ENV, FORMATS, LEVEL_ENV, configure_logging, resolve_format

EXIT_INCOMPLETE, EXIT_UNUSABLE = 1, 2

_EPILOG = """examples:
  batchmt run configs/demo.yaml                      translate (a rerun resumes)
  batchmt run job.yaml --set output.path=/tmp/out    any config key, overridden
  batchmt plan job.yaml                              the shards, nothing translated
  batchmt status out/demo-en-de                      progress of a running or finished job
  batchmt report out/demo-en-de                      one HTML report (report.html)
  batchmt verify job.yaml                            every input id once in the output

exit codes:
  0    done
  1    the job ran but did not complete (failed shards, too many flagged rows, verify
       found problems); committed shards are kept, the same command resumes
  2    the job could not start (config, input, model, output, credentials); one line says
       what to fix, nothing was written
  130  interrupted (Ctrl-C, SIGTERM); the same command resumes
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchmt",
        description="Distributed batch translation of Parquet corpora on Ray.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"batchmt {__version__}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=os.environ.get(LEVEL_ENV, "INFO").upper(),
        help=f"driver and workers alike (default INFO, or ${LEVEL_ENV})",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=os.environ.get(FORMAT_ENV, "auto"),
        help="console: human lines and a progress line; json: one JSON object a line; "
        "auto (default): console on a terminal, json in a pipe",
    )
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
    run.add_argument(
        "--max-flag-rate",
        type=float,
        metavar="SHARE",
        help="fail the job (exit 1, no _SUCCESS) when more than this share of rows (0-1) is "
        "flagged by quality checks; the same as --set quality.max_flag_rate=SHARE",
    )
    plan = with_config("plan", "print the shard plan without translating")
    plan.add_argument("--json", action="store_true", help="the full plan as JSON on stdout")
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
    # The workers read the level from the environment the driver hands them (jobs/ray).
    os.environ[LEVEL_ENV] = args.log_level
    configure_logging(args.log_level, json=resolve_format(args.log_format) == "json")
    # Imported here so `batchmt --help` stays fast (Ray and torch take seconds to import).
    from batchmt.jobs import commands

    try:
        code = int(commands.dispatch(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except commands.USER_ERRORS as exc:
        print(f"batchmt {args.command}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except commands.JobFailed as exc:
        print(f"batchmt {args.command}: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except BrokenPipeError:
        # `batchmt status out | head`: the reader left; end quietly, as `yes | head` does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        message = commands.could_not_start(exc)  # storage access, by the client's error
        if message is None:
            raise
        print(f"batchmt {args.command}: {message}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print(
            f"batchmt {args.command}: interrupted; committed shards are kept and a rerun resumes",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())

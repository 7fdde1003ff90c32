"""`batchmt score CONFIG`: check and score a table that already holds translations.

The job is `run`'s, with `input.translation_column` set: the driver plans, dispatches,
commits and resumes exactly as for `run`, and each actor scores its shard instead of
translating it (workers/quality/scoring.py). The output is the input's columns plus
`qe_score` and `qe_flags`.
"""

from __future__ import annotations

from pathlib import Path

from batchmt.jobs.driver import run_job
from batchmt.jobs.reports.text import job_report
from batchmt.pipeline import columns
from batchmt.pipeline.inputs.corpus import CorpusError
from batchmt.pipeline.inputs.plan import input_schema
from batchmt.pipeline.spec import JobSpec


def scoring_spec(spec: JobSpec) -> JobSpec:
    """The spec `score` runs: the translation column named (default `translation`). Both
    backends score by forced decoding (CTranslate2's agrees with transformers' within 0.1
    nat per token on the demo model, far inside the calibrated thresholds)."""
    column = spec.input.translation_column or columns.TRANSLATION
    return spec.model_copy(
        update={"input": spec.input.model_copy(update={"translation_column": column})}
    )


def check_translation_column(spec: JobSpec) -> None:
    """Fail before any work when the input has no column of translations to score."""
    column = spec.input.translation_column or columns.TRANSLATION
    names = input_schema(spec.input).names
    if column not in names:
        raise CorpusError(
            f"input {spec.input.path} has no column {column!r} of translations to score "
            f"(columns: {', '.join(names)}); set input.translation_column"
        )


def cmd_score(spec: JobSpec, *, show_progress: bool) -> int:
    spec = scoring_spec(spec)
    check_translation_column(spec)
    outcome = run_job(spec, base_dir=str(Path.cwd()), show_progress=show_progress)
    print(job_report(outcome).replace(" translated,", " scored,", 1))
    return 0

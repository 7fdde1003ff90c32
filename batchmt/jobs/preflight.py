"""What must hold before a job claims its output: the output location and the model.

A job that fails these leaves no `_manifest.json` behind, so the fixed rerun is a new job,
not "a different job spec" against a claimed output; the CLI exits 2 with one line.
"""

from __future__ import annotations

from batchmt.pipeline.outputs.locations import check_output_outside_input, check_output_writable
from batchmt.pipeline.spec import JobSpec
from batchmt.workers.engines.preflight import check_model
from batchmt.workers.engines.vllm_backend.runtime import resolved_backend


def preflight(spec: JobSpec, base_dir: str | None = None) -> None:
    """Raise a one-line error (OutputLocationError, EngineLoadError) or return."""
    check_output_outside_input(spec.input, spec.output)
    check_output_writable(spec.output)
    check_model(spec.model.name_or_path, spec.source_lang, spec.target_lang, base_dir)
    resolved_backend(spec.model, base_dir)  # backend=vllm without vLLM: the install line

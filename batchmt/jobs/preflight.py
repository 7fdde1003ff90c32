"""What must hold before a job claims its output: the output location and the model.

A job that fails these leaves no `_manifest.json` behind, so the fixed rerun is a new job,
not "a different job spec" against a claimed output; the CLI exits 2 with one line.
"""

from __future__ import annotations

from batchmt.pipeline.inputs.reader import read_shard_data
from batchmt.pipeline.inputs.shards import Plan
from batchmt.pipeline.outputs.locations import (
    check_cache_outside_data,
    check_output_outside_input,
    check_output_writable,
)
from batchmt.pipeline.spec import JobSpec
from batchmt.workers.engines.canary import check_output_language, needs_canary, pick_texts
from batchmt.workers.engines.preflight import check_model, local_model
from batchmt.workers.engines.vllm_backend.runtime import resolved_backend


def preflight(spec: JobSpec, base_dir: str | None = None, plan: Plan | None = None) -> None:
    """Raise a one-line error (OutputLocationError, EngineLoadError) or return."""
    check_output_outside_input(spec.input, spec.output)
    check_cache_outside_data(spec.cache, spec.input, spec.output)
    check_output_writable(spec.output)
    check_model(spec.model.name_or_path, spec.source_lang, spec.target_lang, base_dir)
    resolved_backend(spec.model, base_dir)  # backend=vllm without vLLM: the install line
    if plan is not None and plan.shards and spec.input.translation_column is None:
        language_canary(spec, plan, base_dir)


def language_canary(spec: JobSpec, plan: Plan, base_dir: str | None) -> None:
    """A model that cannot name its target language translates a few rows of the first
    shard, checked by language ID (workers/engines/canary.py)."""
    found = local_model(spec.model.name_or_path, base_dir)
    if found is None or not needs_canary(found[1]):
        return
    data = read_shard_data(plan.shards[0], spec.input)
    texts = pick_texts(data.table.column(spec.input.text_column).to_pylist())
    check_output_language(spec, found[0], texts)

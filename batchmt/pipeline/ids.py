"""Row ids of any scalar Arrow type, as JSON, as comparison keys, and as printable text.

Ids are whatever the input holds: strings, integers, binary(16) UUIDs, timestamps, decimals.
Output Parquet keeps them in their own type; everything that is not Parquet needs one stable
spelling per value:

- `id_to_json`: a JSON scalar (quality samples, `verify --json`). With the Arrow type it
  round-trips exactly (`id_from_json`): binary as hex, UUIDs in their canonical text,
  timestamps/dates/decimals as Arrow's own text form, times and durations as integers of
  their unit, non-finite floats as text.
- `id_keys`: hashable Python values per row, vectorised, without decoding text (a string id
  that is not valid UTF-8 still has a key).
- `printable`: an id for a terminal: control and format characters escaped, so an id can
  never move the cursor or recolour the screen.
"""

from __future__ import annotations

import math
import unicodedata
import uuid
from typing import Any

import pyarrow as pa

JsonScalar = str | int | float | bool | None

# Categories escaped when printing: controls (ESC...), format characters (bidi overrides,
# zero-width), separators that break lines, surrogates, private use, unassigned.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _plain_type(t: pa.DataType) -> pa.DataType:
    """The type that carries the values: dictionary -> values, extension -> storage."""
    if pa.types.is_dictionary(t):
        return _plain_type(t.value_type)
    if isinstance(t, pa.BaseExtensionType):
        return _plain_type(t.storage_type)
    return t


def _is_uuid(t: pa.DataType) -> bool:
    uuid_type = getattr(pa, "UuidType", None)  # pyarrow >= 18
    return uuid_type is not None and isinstance(t, uuid_type)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or _view(t, "string"))


def _is_bytes(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or _view(t, "binary")
    )


def _view(t: pa.DataType, kind: str) -> bool:
    check = getattr(pa.types, f"is_{kind}_view", None)  # pyarrow >= 16
    return bool(check(t)) if check is not None else False


def _as_integer_unit(t: pa.DataType) -> bool:
    """Times and durations: Arrow cannot parse its own text of them back, integers it can."""
    return bool(pa.types.is_time(t) or pa.types.is_duration(t))


def _as_arrow_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_decimal(t))


def _decoded(values: pa.Array) -> pa.Array:
    """Dictionary decoded, extension unwrapped (UUIDs excepted: they print as UUIDs)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if isinstance(values.type, pa.BaseExtensionType) and not _is_uuid(values.type):
        values = values.storage
    return values


def _integer_storage(values: pa.Array) -> pa.Array:
    width = pa.int32() if values.type.bit_width == 32 else pa.int64()
    return values.view(width)


def id_to_json(value: pa.Scalar) -> JsonScalar:
    """One id as a JSON scalar (see the module docstring for the spelling per type)."""
    one = pa.array([value], value.type) if value.is_valid else pa.nulls(1, value.type)
    return ids_to_json(one)[0]


def ids_to_json(values: pa.Array | pa.ChunkedArray) -> list[JsonScalar]:
    """Every id of a column as a JSON scalar (vectorised where Arrow can)."""
    if isinstance(values, pa.ChunkedArray):
        return [v for chunk in values.chunks for v in ids_to_json(chunk)]
    return _json_values(_decoded(values))


def _json_values(values: pa.Array) -> list[JsonScalar]:
    t = values.type
    if _is_uuid(t):
        return [None if v is None else str(v) for v in values.to_pylist()]
    if _is_text(t):
        raw = values.cast(pa.large_binary()).to_pylist()
        # Invalid UTF-8 cannot be a JSON string; the row is marked invalid elsewhere, and
        # here it stays recognisable (the bad bytes as \x escapes).
        return [None if b is None else b.decode("utf-8", "backslashreplace") for b in raw]
    if _is_bytes(t):
        return [None if b is None else b.hex() for b in values.cast(pa.large_binary()).to_pylist()]
    if _as_arrow_text(t):
        return list(values.cast(pa.string()).to_pylist())
    if _as_integer_unit(t):
        return list(_integer_storage(values).to_pylist())
    if pa.types.is_floating(t):
        return [_float(v) for v in values.to_pylist()]
    # Integers and booleans as they are; any other scalar type (intervals, ...) as its text,
    # so no id can make a quality file unwritable.
    return [v if v is None or isinstance(v, (int, bool)) else str(v) for v in values.to_pylist()]


def _float(value: float | None) -> JsonScalar:
    if value is None or math.isfinite(value):
        return value
    return str(value)  # "nan", "inf", "-inf": JSON has no spelling for them


def id_from_json(value: JsonScalar, type_: pa.DataType) -> pa.Scalar:
    """The Arrow value `id_to_json` encoded (for readers of quality files and tests)."""
    if value is None:
        return pa.scalar(None, type_)
    if pa.types.is_dictionary(type_):
        return id_from_json(value, type_.value_type)
    if _is_uuid(type_):
        return pa.scalar(uuid.UUID(str(value)), type_)
    plain = _plain_type(type_)
    if _is_text(plain):
        result = pa.scalar(str(value), plain)
    elif _is_bytes(plain):
        result = pa.scalar(bytes.fromhex(str(value)), plain)
    elif _as_arrow_text(plain):
        result = pa.array([str(value)], pa.string()).cast(plain)[0]
    elif _as_integer_unit(plain):
        width = pa.int32() if plain.bit_width == 32 else pa.int64()
        result = pa.array([int(value)], width).view(plain)[0]
    elif pa.types.is_floating(plain):
        result = pa.scalar(float(value), plain)
    else:
        result = pa.scalar(value, plain)
    if isinstance(type_, pa.BaseExtensionType):
        return pa.ExtensionArray.from_storage(type_, pa.array([result], plain))[0]
    return result


def id_keys(values: pa.Array | pa.ChunkedArray) -> list[Any]:
    """Hashable Python values, one per row (None for null), equal exactly when ids are.

    Text is compared as bytes (never decoded), decimals and temporal values by their Arrow
    text or integer, so no id type can make a comparison fail.
    """
    if isinstance(values, pa.ChunkedArray):
        return [k for chunk in values.chunks for k in id_keys(chunk)]
    values = _decoded(values)
    t = values.type
    if _is_uuid(t):
        values = values.storage
        t = values.type
    if _is_text(t) or _is_bytes(t):
        return list(values.cast(pa.large_binary()).to_pylist())
    if _as_arrow_text(t):
        return list(values.cast(pa.string()).to_pylist())
    if _as_integer_unit(t):
        return list(_integer_storage(values).to_pylist())
    if pa.types.is_floating(t):
        # NaN != NaN: compare floats by their text, so a NaN id matches itself.
        return [None if v is None else repr(v) for v in values.to_pylist()]
    return list(values.to_pylist())


def printable(value: JsonScalar) -> str:
    """An id for a terminal or log line: unprintable characters as \\x/\\u escapes."""
    if value is None:
        return "null"
    if not isinstance(value, str):
        return str(value)
    out = []
    for ch in value:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in _UNPRINTABLE:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)

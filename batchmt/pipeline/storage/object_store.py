"""fsspec / s3fs storage options in the spelling delta-rs (the Rust object_store) reads.

One mapping for Delta inputs (pipeline/inputs/sources/delta.py) and Delta outputs
(pipeline/outputs/tables/delta.py): a job's `storage_options` are written once, as for every other
fsspec path, and mean the same credentials and endpoint whichever side of the job reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# s3fs-style option -> object_store key. Credentials not given here come from the
# environment (AWS_ACCESS_KEY_ID ...), which delta-rs reads itself, as s3fs does.
_S3_KEYS = {
    "key": "AWS_ACCESS_KEY_ID",
    "secret": "AWS_SECRET_ACCESS_KEY",
    "token": "AWS_SESSION_TOKEN",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region_name": "AWS_REGION",
}


def delta_rs_options(url: str, options: Mapping[str, Any]) -> dict[str, str]:
    """`options` (fsspec / s3fs spelling) as delta-rs wants them for the table at `url`.

    `endpoint_url` and `region_name` (top level or in client_kwargs), key / secret / token
    map to AWS_*; `anon` to unsigned requests; an http:// endpoint (MinIO, moto) also needs
    AWS_ALLOW_HTTP. Keys already in delta-rs spelling (AWS_*, aws_*) pass through.
    """
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if protocol not in ("s3", "s3a"):
        return {k: str(v) for k, v in options.items() if k.isupper()}
    flat = dict(options)
    client = flat.pop("client_kwargs", None) or {}
    for key in ("endpoint_url", "region_name"):
        if key in client:
            flat.setdefault(key, client[key])
    out: dict[str, str] = {}
    for key, value in flat.items():
        if key in _S3_KEYS and value is not None:
            out[_S3_KEYS[key]] = str(value)
        elif key.isupper() or key.lower().startswith("aws_"):
            out[key] = str(value)
    if flat.get("anon"):
        out.setdefault("AWS_SKIP_SIGNATURE", "true")
    endpoint = out.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        out.setdefault("AWS_ALLOW_HTTP", "true")
    if "AWS_REGION" not in out and not os.environ.get("AWS_REGION"):
        region = os.environ.get("AWS_DEFAULT_REGION")
        if region:
            out["AWS_REGION"] = region
    return out

"""Can a hub model id be fetched at all? Asked by the driver before it claims the output.

Without it an unreachable hub shows up only inside every replica, after the output is
claimed, as a 76-line traceback 40 s later (huggingface_hub retries five times), with the
model's name lost. Here: the local cache first, then one short connection to the hub's
host; either gives an answer in seconds, or one line naming the model.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from batchmt.workers.engines.base import EngineLoadError

_CONNECT_TIMEOUT_S = 5.0
_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def check_hub_model(name: str) -> None:
    """Raise EngineLoadError when `name` is neither cached nor fetchable from the hub."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # cached: the replicas load it from here
    fix = (
        "check the model id and the network, or set model.name_or_path to a downloaded model folder"
    )
    if constants.HF_HUB_OFFLINE:
        raise EngineLoadError(
            f"model {name!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"unset it or {fix}"
        )
    if any(os.environ.get(k) for k in _PROXY_ENV):
        return  # through a proxy only the download itself can tell
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    try:
        socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EngineLoadError(
            f"model {name!r} is not a local folder, not in the Hugging Face cache, and the hub "
            f"{constants.ENDPOINT} cannot be reached ({reason}); {fix}"
        ) from None

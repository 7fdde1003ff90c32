"""Run in a subprocess: a Ray instance that declares 4 logical GPUs (no real ones), one
translator replica per GPU, each reporting what it was pinned to."""

from __future__ import annotations

import json
import sys

import ray

from batchmt.jobs.driver import _start_pool
from batchmt.jobs.ray.cluster import pool_shape
from batchmt.pipeline.outputs.lease import GENERATION_ENV
from batchmt.pipeline.spec import spec_from_dict


def main(model_dir: str) -> None:
    ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, log_to_driver=False)
    spec = spec_from_dict(
        {
            "source_lang": "en",
            "target_lang": "de",
            "input": {"path": "unused"},
            "output": {"path": "unused-out"},
            "model": {"name_or_path": model_dir},
        }
    )
    shape = pool_shape(spec, pending_shards=10, resources=ray.cluster_resources())
    # No lease in this probe: a generation number only, for the actors' fence.
    slots = _start_pool(spec, shape, ".", {GENERATION_ENV: "1"})
    infos = ray.get([slot.handle.info.remote() for slot in slots])
    print(json.dumps({"shape": shape.__dict__, "infos": infos}))


if __name__ == "__main__":
    main(sys.argv[1])

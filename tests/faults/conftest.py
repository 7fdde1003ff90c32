from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_models import build_tiny_marian


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_marian(tmp_path_factory.mktemp("models") / "tiny-marian")

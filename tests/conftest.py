import os
from pathlib import Path

import pytest

# One thread per test worker: the suite runs under pytest-xdist on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCH = Path(os.environ.get("FASHION_BENCH", Path(__file__).resolve().parents[1].parent / "shared/data/fashion-bench"))


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """predict runs on ONNX Runtime by default and exports each model once into a per-user cache: give the test
    session (each xdist worker) its own, so that tests never write into the user's and start from an empty one."""
    from classifiers.onnx_cache import CACHE_ENV

    folder = tmp_path_factory.mktemp("onnx-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv(CACHE_ENV, str(folder))
    yield folder
    mp.undo()


@pytest.fixture(scope="session")
def bench() -> Path:
    """The real fashion-bench data folder; tests that use it skip cleanly when it is absent (a user's clone)."""
    if not BENCH.is_dir():
        pytest.skip(f"fashion-bench data not found at {BENCH}")
    return BENCH


SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "predictions.schema.json"


@pytest.fixture(scope="session")
def check_line():
    """Validate one predictions.jsonl line (a dict) against docs/predictions.schema.json; raises on a violation."""
    import json

    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    def check(line: dict) -> dict:
        validator.validate(line)
        return line

    return check


@pytest.fixture(scope="session")
def shipped_reader():
    """The Python API on the shipped model (conf 0.5), loaded once per test worker for the service's tests."""
    from fashion2stage import Reader
    return Reader(conf=0.5)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Tiny real detector, attribute and keypoint runs on synthetic garments (tests/tiny_models.py), trained once
    per test worker: {"runs", "images", "val", "root"}."""
    from tiny_models import train_models

    return train_models(tmp_path_factory.mktemp("e2e"))

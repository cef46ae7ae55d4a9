"""How many of the project's files one image runs through (issue 26: "one image through Reader executes code in at
most 10 project files"; docs/ARCHITECTURE.md, "One image, file by file"). A file met per image is a file a reader
of the code must open to follow one image; work done once per model (label sets, flip permutations) belongs to
loading."""
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "images" / "ccp_0004.jpg"
MAX_FILES = 10


def files_run(call) -> set[str]:
    """The project files (relative to the repository root) whose code runs during ``call()``, in any thread."""
    files: set[str] = set()

    def profile(frame, event, arg):
        if event == "call":
            f = frame.f_code.co_filename
            if f.startswith(str(ROOT)) and "/.venv/" not in f:
                files.add(Path(f).relative_to(ROOT).as_posix())

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return files


def test_the_profiler_sees_the_project_files_it_runs():
    from fashion2stage.labels import LabelSet

    labels = LabelSet(keypoints=["hem_left", "hem_right", "rare_point"])  # a set no other test has flipped
    # the keypoint model flips every batch: the permutation is worked out once per keypoint set (taxonomy.py) ...
    assert files_run(labels.flip_permutation) == {"fashion2stage/labels.py", "fashion2stage/taxonomy.py"}
    assert files_run(labels.flip_permutation) == {"fashion2stage/labels.py"}  # ... then read from the cache
    assert labels.flip_permutation() == [1, 0, 2]


@pytest.mark.slow
def test_one_image_runs_in_few_project_files():
    from fashion2stage import Reader

    reader = Reader()
    reader(str(IMAGE))  # the first call warms up what is done once (ONNX Runtime sessions, caches)
    files = files_run(partial(reader, str(IMAGE)))  # no lambda: it would count this file
    print(f"{len(files)} project files per image:", *sorted(files), sep="\n  ")
    assert len(files) <= MAX_FILES, sorted(files)

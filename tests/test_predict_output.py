"""``predict``'s output folder (issue 28): one writer at a time, ``--resume`` on a file with lines that are not
predictions, and file names with control characters. ``predict_folder`` on a pipeline without models (it decodes
every photo and finds no garment), so that these tests are about the output, not the models."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion2stage.app.pipeline import Pipeline
from fashion2stage.app.predict import predict_folder
from fashion2stage.errors import DataError

HOLD = """
import fcntl, sys
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.truncate(0); f.write("4242\\n"); f.flush()
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(d / f"p{i}.png")
    return d


def test_a_second_writer_on_the_same_out_is_refused_in_one_line(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out / ".predictions.jsonl.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OSError) as e:
            predict_folder(Pipeline(), photos, out, progress=False)
        message = str(e.value)
        assert "\n" not in message and str(out / "predictions.jsonl") in message and "pid 4242" in message
        assert not (out / "predictions.jsonl").exists()  # refused before touching it
    finally:
        holder.communicate("")
    assert predict_folder(Pipeline(), photos, out, progress=False).images == 3  # free again once the holder ends


@pytest.mark.parametrize("bad, why", [(b"{}", "not a predictions line"), (b"[1, 2]", "not a predictions line"),
                                      (b"\xff\xfe{\"image\": \"p1.png\"}", "not UTF-8"),
                                      (b"{\"image\": ", "not JSON")])
def test_resume_names_the_file_and_line_of_a_line_that_is_not_a_prediction(photos, tmp_path, bad, why):
    out = tmp_path / "out"
    predict_folder(Pipeline(), photos, out, progress=False)
    jsonl = out / "predictions.jsonl"
    lines = jsonl.read_bytes().splitlines()
    jsonl.write_bytes(b"\n".join([lines[0], bad, lines[2]]) + b"\n")
    with pytest.raises(DataError) as e:
        predict_folder(Pipeline(), photos, out, resume=True, progress=False)
    assert str(e.value).startswith(f"{jsonl}:2: {why}") and "\n" not in str(e.value)
    jsonl.write_bytes(b"\n".join([lines[0], lines[1], bad]))  # the same bytes as a torn last line: dropped
    if why != "not a predictions line":  # ({} and [1, 2] are whole JSON: a complete line, not a torn one)
        summary = predict_folder(Pipeline(), photos, out, resume=True, progress=False)
        assert (summary.skipped, summary.images) == (2, 1)


def test_control_characters_in_file_names_are_written_as_escapes(photos, tmp_path):
    names = {"new\nline.png": "new\\x0aline.png", "tab\tand\x1b.png": "tab\\x09and\\x1b.png",
             os.fsdecode(b"caf\xe9.png"): "caf\\xe9.png"}  # the last: a name that is not UTF-8
    for raw in names:
        (photos / raw).write_bytes((photos / "p0.png").read_bytes())
    out = tmp_path / "out"
    summary = predict_folder(Pipeline(), photos, out, progress=False)
    written = [json.loads(line)["image"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert summary.images == 6 and set(names.values()) <= set(written)
    assert all(name.isprintable() for name in written)
    again = predict_folder(Pipeline(), photos, out, resume=True, progress=False)  # the escaped names match
    assert (again.skipped, again.images) == (6, 0)

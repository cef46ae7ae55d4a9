"""What ``predict SOURCE`` and ``Reader`` accept (an image, a folder, a glob, a .txt list), and the command line's
one-line errors and exit codes around it: --version, --out naming a file, --device cuda without a GPU, a run where
no photo could be read."""
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fashion2stage.app.cli import app
from fashion2stage.app.sources import SourceError, expand_source, resolve_source

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
NAMES = ["ccp_0004.jpg", "ccp_0062.jpg", "ccp_0117.jpg"]


@pytest.fixture
def photos(tmp_path) -> Path:
    """tmp/photos/{a.jpg, sub/b.jpg, notes.txt}"""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    shutil.copy(EXAMPLES / NAMES[0], d / "a.jpg")
    shutil.copy(EXAMPLES / NAMES[1], d / "sub" / "b.jpg")
    (d / "notes.txt").write_text("not a photo")
    return d


def test_a_file_a_folder_a_glob_and_a_list_resolve_to_a_root_and_relative_paths(photos, tmp_path, monkeypatch):
    assert resolve_source(photos) == (photos, None)  # a folder: predict lists it itself, recursively
    assert resolve_source(photos / "sub" / "b.jpg") == (photos / "sub", ["b.jpg"])
    assert resolve_source(f"{photos}/**/*.jpg") == (photos, ["a.jpg", "sub/b.jpg"])
    listing = tmp_path / "list.txt"  # relative lines are relative to the list's folder; comments and blanks skipped
    listing.write_text(f"# photos to read\nphotos/sub/b.jpg\n\n{photos / 'a.jpg'}\nphotos/gone.jpg\n")
    assert resolve_source(listing) == (photos, ["sub/b.jpg", "a.jpg", "gone.jpg"])  # a missing one: its error line
    monkeypatch.chdir(tmp_path)  # under the working folder the root stays relative
    assert resolve_source("photos/*.jpg") == (Path("photos"), ["a.jpg"])
    assert expand_source("photos") == [os.path.join("photos", "a.jpg"), os.path.join("photos", "sub/b.jpg")]
    assert expand_source("photos/a.jpg") is None  # one image: read as it is


def test_sources_holding_nothing_name_themselves(photos, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "blank.txt").write_text("\n# nothing\n")
    cases = {f"{photos}/*.png": "no image matches this pattern", str(tmp_path / "nope.jpg"): "no such file or folder",
             str(tmp_path / "blank.txt"): "lists no paths", str(empty): "no images found"}
    for source, problem in cases.items():
        with pytest.raises(SourceError) as err:  # a folder's images are listed by predict_folder, or by the Reader
            (expand_source if source == str(empty) else resolve_source)(source)
        assert err.value.source == source and problem in err.value.problem and str(err.value).startswith(source)


def _run(*args):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output.strip()


def test_version_and_one_line_errors(photos, tmp_path):
    code, out = _run("--version")
    assert code == 0 and out.startswith("fashion2stage ") and len(out.splitlines()) == 1
    code, out = _run("predict", str(photos), "--out", str(photos / "a.jpg"))
    assert code == 1 and out == f"fashion2stage: --out {photos / 'a.jpg'}: it is a file, not a folder"
    code, out = _run("predict", str(photos), "--out", str(photos / "a.jpg" / "out"))
    assert code == 1 and out.endswith(f"{photos / 'a.jpg'} is a file, not a folder") and "Errno" not in out
    code, out = _run("predict", str(photos), "--images", str(photos))
    assert code == 1 and "give the photos once" in out
    code, out = _run("predict", f"{photos}/*.png", "--out", str(tmp_path / "out"))
    assert code == 1 and out == f"fashion2stage: {photos}/*.png: no image matches this pattern"


def test_cuda_without_a_gpu_names_the_missing_device_not_a_model_file(photos, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, out = _run("predict", str(photos), "--device", "cuda", "--out", str(tmp_path / "out"))
    assert code == 1 and len(out.splitlines()) == 1 and "--device cuda: " in out and "CUDA" in out
    assert "config.json" not in out and not (tmp_path / "out").exists()
    code, out = _run("predict", str(photos), "--device", "gpu", "--out", str(tmp_path / "out"))
    assert code == 1 and "expected cpu, cuda or cuda:N" in out


@pytest.mark.slow
def test_exit_code_is_1_when_no_photo_could_be_read(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_text("not an image")
    (bad / "b.png").write_bytes(b"")
    code, out = _run("predict", str(bad), "--out", str(tmp_path / "out"), "--runtime", "torch")
    assert code == 1 and "none of the 2 photo(s) could be read" in out.splitlines()[-1]
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == 2  # the error lines are written
    shutil.copy(EXAMPLES / NAMES[0], bad / "c.jpg")  # one good photo among them: the run succeeded
    code, out = _run("predict", str(bad), "--out", str(tmp_path / "out"), "--runtime", "torch")
    assert code == 0, out

"""``scripts/benchmark.py --vs-yolo`` on two real photos: both tools run on the same photos, their rates and the ratio
of one repeat come back, and predict's per-stage shares and CPU time are read from its summary line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.data
def test_tiny_run_times_yolo_and_predict_on_the_same_photos(bench, tmp_path):
    out = tmp_path / "bench.json"
    detector = ROOT / "fashion2stage/default_model/detector"
    cmd = [sys.executable, str(ROOT / "scripts/benchmark.py"), "--vs-yolo", "--data", str(bench), "--images", "2",
           "--repeats", "1", "--threads", "1", "--yolo-size", "160", "--no-default", "--work", str(tmp_path / "w"),
           "--variant", f"detector only=--runtime torch --no-default --detector {detector}", "--json", str(out)]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # ultralytics' settings file: not the user's
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    val = {im["file_name"] for im in json.loads((bench / "ccp/annotations/instances_val.json").read_text())["images"]}
    photos = sorted((tmp_path / "w/photos").iterdir())
    assert report["photos"] == 2 and [p.name for p in photos] == sorted(val)[:2]
    assert all(p.resolve().parent == (bench / "ccp/images").resolve() for p in photos)
    rows = {r["name"]: r for r in report["rows"]}
    yolo, ours = rows["yolo11n 640"], rows["detector only"]
    assert yolo["img_s"] > 0 and ours["img_s"] > 0 and yolo["threads"] == ours["threads"] == 1  # equal threads
    assert "yolo11n 640, ultralytics' threads" in rows  # yolo's own choice is reported beside, not compared to
    assert ours["ratio"] == pytest.approx(ours["img_s"] / yolo["img_s"], rel=1e-6)  # one repeat: its own ratio
    assert ours["cpu_ratio"] == pytest.approx(yolo["cpu_ms"] / ours["cpu_ms"], rel=1e-6) and ours["cpu_ms"] > 0
    assert report["runs"]["detector only"][0]["images"] == 2
    assert ours["shares"]["detector"] > 50 and ours["shares"]["keypoints"] == 0  # no keypoint model was given
    assert "| detector only (1 thread) |" in done.stdout and "ratio to yolo11n 640 (wall)" in done.stdout

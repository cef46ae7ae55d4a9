"""scripts/benchmark.py end to end on the real fashion-bench with the tiny profile: the report's generated block
replaces the old one and leaves the rest of the file alone, every table has numbers (or its stage's failure), and
the plots it links exist."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def sections(text: str) -> dict[str, str]:
    """``### title`` -> the text up to the next title."""
    parts = re.split(r"^### (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def rows(section: str) -> list[list[str]]:
    """Cells of the table's data rows (header and separator dropped)."""
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def numbers(row: list[str]) -> list[float]:
    return [float(c) for c in row if NUMBER.match(c)]


@pytest.mark.slow
@pytest.mark.data
def test_tiny_profile_writes_a_report_with_numbers_and_plots(bench, tmp_path):
    report, plots = tmp_path / "BENCHMARKS.md", tmp_path / "plots"
    head, tail = "# Benchmarks\n\nWritten by hand.\n\n", "\n## After\nAlso by hand.\n"
    report.write_text(f"{head}<!-- benchmark:begin -->\nstale numbers\n<!-- benchmark:end -->{tail}")
    cmd = [sys.executable, str(ROOT / "scripts/benchmark.py"), "--profile", "tiny", "--data", str(bench),
           "--work", str(tmp_path / "work"), "--report", str(report), "--plots", str(plots), "--threads", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    text = report.read_text()
    assert text.startswith(head + "<!-- benchmark:begin -->\n") and text.endswith("<!-- benchmark:end -->" + tail)
    assert "stale numbers" not in text and text.count("<!-- benchmark:begin -->") == 1
    s = sections(text)
    for title, body in s.items():  # every table names its machine, date and exact commands
        assert "cores" in body and "UTC" in body and "```bash\n" in body, title

    det = rows(s["Detection (ccp val)"])
    assert det[-1][0] == "**all**" and len(numbers(det[-1])) == 5  # val boxes + 2 backends x 2 mAPs
    assert all(0 <= v <= 1 for v in numbers(det[-1])[1:])
    cad = rows(s["cad attributes: detector crop vs whole image"])
    assert {r[0] for r in cad} >= {"sleeve_length", "neckline_design", "collar_design", "category"}
    assert all(0 <= v <= 1 for v in numbers(cad[-1])) and len(numbers(cad[-1])) == 4
    ccp_title = "ccp fine category: box jitter and crop padding"
    ccp = rows(s[ccp_title])
    for row in ccp:  # a 1-epoch detector may find nothing to crop: then each run says why
        assert len(numbers(row)) >= 5 or f"**{row[0]} failed**" in s[ccp_title]
    padded, tight = ccp[-2][:3], ccp[-1][:3]  # the padding ablation: the same run but for --padding
    assert padded == ["ccp-jitter-default", "default", "1.25"] and tight == ["ccp-tight-crops", "default", "1.0"]
    config = tmp_path / "work/tiny/runs/ccp-tight-crops/config.json"  # absent when the detector matched nothing
    assert not config.is_file() or json.loads(config.read_text())["crop"]["padding"] == 1.0
    kp = rows(s["Keypoints (landmarks val)"])
    assert [r[0] for r in kp] == ["default", "none"] and all(len(numbers(r)) >= 6 for r in kp)
    assert s["Keypoints (landmarks val)"].count("--threads 1") == 2
    trained = {r[0]: r for r in rows(s["Training speed per stage"])}
    assert {"det-faster-rcnn", "det-yolo", "cad-whole", "cad-two-stage", "kp-jitter-default"} <= set(trained)
    assert all(numbers(r)[0] > 0 for r in trained.values())

    speed = next(body for title, body in s.items() if title.startswith("Inference throughput"))
    full = [r for r in rows(speed) if r[0] == "full" and r[1] == "torch"]
    assert [r[2] for r in full] == ["1", "4"] and all(numbers(r)[1] > 0 for r in full)
    assert {r[0] for r in rows(speed)} >= {"detector only (faster-rcnn)", "detector only (yolo)"}
    assert "batch 4 / batch 1, torch" in speed and "the second stage's cost" in speed
    predict_cmds = [ln for ln in speed.splitlines() if ln.startswith("python -m fashion2stage predict")]
    assert len(predict_cmds) == 4 and all(ln.endswith("--threads 1") for ln in predict_cmds)
    memory = rows(s["Peak memory vs number of images (full pipeline, torch)"])
    assert [r[0] for r in memory] == ["4", "40"] and all(numbers(r)[2] > 100 for r in memory)  # MiB
    baselines = rows(s["Against what a user would otherwise run"])
    assert len(baselines) == 5 and all(numbers(r) and numbers(r)[0] > 0 for r in baselines)

    assert (plots / "throughput_vs_batch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(plots.glob("confusion_cad_*.png"))
    linked = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert linked and all((report.parent / p).is_file() for p in linked)

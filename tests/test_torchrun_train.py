"""Each torch trainer under ``torchrun --nproc_per_node 2`` (gloo, CPU) on a tiny set it makes: one epoch gives
exactly one run folder, written by rank 0 alone, each process trains on half the samples, and a resume under
torchrun continues with epoch 2. Both trainings run in one torchrun launch (the script holds the process group):
starting Python with torch, timm and albumentations twice per process costs more than the training here."""
import csv
import json
import textwrap

import pytest

from test_attributes import _coco_dataset, _csv_dataset
from test_detectors_train import synthetic_coco
from test_engine import torchrun
from test_keypoints_train import _write_split

LAUNCH = textwrap.dedent("""
    import importlib, json, sys
    import torch.distributed as dist
    dist.init_process_group("gloo")  # held here, so the two trainings below run in the same group
    module = importlib.import_module(sys.argv[1])
    train, config, cfg = getattr(module, sys.argv[2]), getattr(module, sys.argv[3]), json.loads(sys.argv[4])
    run = train(config(**cfg, epochs=1))  # no name: rank 0 picks the timestamped folder, the other must follow
    if dist.get_rank() == 0:
        print("FIRST", sorted(p.name for p in run.parent.iterdir()), flush=True)
        print((run / "results.csv").read_text(), flush=True)
    dist.barrier()
    train(config(**{**cfg, "name": run.name}, epochs=2, resume=True))
    dist.barrier()
    dist.destroy_process_group()
""")


def _detector(tmp_path):
    return "detectors.train", "train_detector", "DetectTrainConfig", {
        "data": str(synthetic_coco(tmp_path / "det", 6, seed=1)), "detector": "faster-rcnn", "batch": 3,
        "image_size": 96, "threads": 1}


def _attributes(tmp_path):
    return "classifiers.train_attributes", "train", "AttributeTrainConfig", {
        "data": [str(_coco_dataset(tmp_path / "coco", "train", 4)), str(_csv_dataset(tmp_path / "cad", "train", 8))],
        "val": [str(_coco_dataset(tmp_path / "coco", "val", 2)), str(_csv_dataset(tmp_path / "cad", "val", 2))],
        "image_size": 64, "batch_size": 3, "pretrained": False, "threads": 1}


def _keypoints(tmp_path):
    return "classifiers.train_keypoints", "train", "KeypointTrainConfig", {
        "data": str(_write_split(tmp_path, "train", 6, 0)), "width": 64, "height": 64, "batch_size": 3,
        "pretrained": False, "threads": 1}


@pytest.mark.slow
@pytest.mark.parametrize("trainer", [_detector, _attributes, _keypoints])
def test_two_processes_one_run_folder_half_the_samples_each_and_resume(trainer, tmp_path):
    module, fn, cfg_class, cfg = trainer(tmp_path)
    project = tmp_path / "runs"
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    out = torchrun(script, module, fn, cfg_class, json.dumps({**cfg, "project": str(project)})).stdout
    first = out[out.index("FIRST"):]
    runs = list(project.iterdir())
    assert len(runs) == 1 and first.startswith(f"FIRST ['{runs[0].name}']"), (runs, first[:200])
    run = runs[0]
    rows = list(csv.DictReader(first.splitlines()[1:3]))  # results.csv after the first training: one row
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    for f in ("config.json", "labels.json", "weights.safetensors", "last.pt", "results.png"):
        assert (run / f).is_file(), f
    assert not list(run.glob(".*tmp*"))
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # 6 training samples: each rank trains on 3 (attributes: 12 crops of 2 sources, drawn balanced, 6 each)
    half = 6 if module.endswith("attributes") else 3
    for r in rows:
        assert r["samples_per_rank"] == f"{half} {half}" and r["train_samples"] == str(2 * half)
    log = (run / "train.log").read_text()
    assert log.count(" train: ") == 2 and "2 process(es)" in log  # once per training: rank 1 wrote nothing
    assert "after epoch 1" in log
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2


def test_yolo_refuses_torchrun_with_one_line_saying_what_to_do(tmp_path, monkeypatch):
    """ultralytics starts its own DDP processes: under torchrun every rank would train its own YOLO into one folder."""
    from detectors.train import DetectTrainConfig, train_detector

    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "localhost"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match="without torchrun.*--device 0,1") as err:
        train_detector(DetectTrainConfig(data=str(tmp_path / "missing.json"), detector="yolo",
                                         project=str(tmp_path / "runs")))
    assert "\n" not in str(err.value) and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_cli_under_torchrun_prints_its_summary_once_and_counts_every_garment(tmp_path):
    """``torchrun --nproc_per_node 2 fashion2stage keypoints-train`` on 30 garments, batch 8: rank 0 alone prints
    the run folder, and the epoch's train_samples is 30, 15 per rank (it read 16 when each rank dropped its last,
    incomplete batch)."""
    data = _write_split(tmp_path, "train", 30, 0)
    script = tmp_path / "cli.py"
    script.write_text("from fashion2stage.app.cli import app\napp()\n")
    out = torchrun(script, "keypoints-train", "--data", str(data), "--image-size", "64x64", "--batch-size", "8",
                   "--no-pretrained", "--threads", "1", "--epochs", "1", "--project", str(tmp_path / "runs"),
                   "--name", "kp")
    run = tmp_path / "runs" / "kp"
    assert out.stdout.count(f"{run}\n") == 1, out.stdout
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert rows[0]["train_samples"] == "30" and rows[0]["samples_per_rank"] == "15 15"

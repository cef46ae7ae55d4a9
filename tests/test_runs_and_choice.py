import numpy as np
import pytest
import torch

from fashion2stage import runs
from fashion2stage.geometry import CropSpec
from fashion2stage.labels import LabelSet
from fashion2stage.records import Garment
from fashion2stage.specs import AttributeSpec


def _g(t, s):
    return Garment(type=t, box_xyxy=np.array([0, 0, 10, 10.0]), score=s)


def test_answering_garment_highest_score_of_a_carrying_type():
    labels = LabelSet.fashionai()
    gs = [_g("trousers", 0.99), _g("blouse", 0.6), _g("outwear", 0.8), _g("skirt", 0.95)]
    assert labels.answering_garment(gs, "sleeve_length") == 2  # outwear 0.8 beats blouse 0.6; trousers don't carry it
    assert labels.answering_garment(gs, "pant_length") == 0
    assert labels.answering_garment(gs, "skirt_length") == 3
    assert labels.answering_garment([_g("trousers", 0.9)], "collar_design") is None  # -> whole image
    assert labels.answering_garment([], "sleeve_length") is None


def test_run_folder_round_trip(tmp_path):
    run = runs.new_run_dir(tmp_path, "r1", "attributes")
    runs.save_config(run, AttributeSpec(backbone="efficientnet_lite0", keys=("sleeve_length",),
                                        crop=CropSpec(224, 224)))
    assert runs.load_config(run, "attributes")["crop"]["width"] == 224
    assert runs.load_spec(run, "attributes").crop == CropSpec(224, 224)
    with pytest.raises(ValueError, match="expected a 'detector' run"):
        runs.load_config(run, "detector")
    with pytest.raises(FileNotFoundError, match="not a fashion2stage run folder"):
        runs.load_config(tmp_path / "nothing")
    runs.save_labels(run, LabelSet.fashionai())
    assert runs.load_labels(run).attributes["sleeve_length"][0] == "Invisible"
    m = torch.nn.Linear(3, 2)
    runs.save_weights(run / "weights.safetensors", m)
    m2 = runs.load_weights(run / "weights.safetensors", torch.nn.Linear(3, 2))
    assert torch.equal(m.weight, m2.weight)
    with pytest.raises(FileExistsError):
        runs.new_run_dir(tmp_path, "r1", "attributes")


def test_results_csv_append_and_truncate(tmp_path):
    for e in range(1, 4):
        runs.append_results(tmp_path, {"epoch": e, "loss": 1.0 / e})
    runs.truncate_results(tmp_path, 2)
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines == ["epoch,loss", "1,1", "2,0.5"]


def test_checkpoint_loads_without_pickle(tmp_path):
    m = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(m.parameters())
    m(torch.ones(1, 2)).sum().backward()
    opt.step()
    runs.save_checkpoint(tmp_path / "last.pt", {"model": m.state_dict(), "optimizer": opt.state_dict(), "epoch": 3})
    state = runs.load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 3
    opt2 = torch.optim.AdamW(m.parameters())
    opt2.load_state_dict(state["optimizer"])

"""The shared training engine on a tiny model: schedule, rank shares, fit() (resume = uninterrupted run, autocast,
gradient clipping, the best weights by a named metric), results, and DistributedDataParallel under a real 2-process
torchrun (gloo on the CPU)."""
import csv
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fashion2stage import engine
from fashion2stage.distributed import Dist
from fashion2stage.fit_settings import FitSettings
from fashion2stage.step import amp_dtype

ROOT = Path(__file__).resolve().parents[1]


def torchrun(script: Path, *args: str, nproc: int = 2, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node nproc script args``, this checkout first on
    the path, one thread per process; fails the test with both streams when a process fails. The timeout only
    catches a hang: ~30 s on a quiet 2-core machine, but minutes when other jobs leave each process 5% of a core."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                          str(script), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = engine.schedule(opt, total_steps=20, warmup_steps=4, floor=0.01)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))  # never rises after the warm-up
    assert lrs[12] == pytest.approx(0.1 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 8 / 16))))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)  # step 20: the floor


def test_ranks_get_disjoint_halves_and_several_sources_are_balanced():
    data = list(range(10))
    shares = [list(engine.make_loader(data, 1, Dist(rank=r, world_size=2)).batch_sampler.sampler) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 5 and sorted(shares[0] + shares[1]) == data
    balanced = engine.make_loader(list(range(60)), 4, Dist(), sources=[50, 10])
    idx = list(balanced.batch_sampler.sampler)
    assert len(idx) == 60 and 20 <= sum(i >= 50 for i in idx) <= 40  # ~30 expected; 10 without balancing


DATA_SEED = 0
TIMES = ("train_img_per_s", "train_seconds", "train_cpu_seconds")


def _tiny_fit(run: Path, epochs: int = 4, stop_after: int | None = None, settings: FitSettings | None = None,
              validate=None, best=None, lr: float = 0.05, optimizer=None):
    """Regression on 24 points, batch 5 (the last batch of each epoch is incomplete), through engine.fit in one
    run folder; ``stop_after``: the process "dies" after that epoch's checkpoint (an exception out of fit)."""
    torch.manual_seed(DATA_SEED)
    ctx = Dist()
    x = torch.randn(24, 3)
    data = list(zip(x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3))
    model = torch.nn.Linear(3, 1)
    opt = (optimizer or torch.optim.AdamW)(model.parameters(), lr=lr)
    loader = engine.make_loader(data, 5, ctx, seed=3)
    sched = engine.schedule(opt, epochs * len(loader), 3)

    def loss_fn(m, batch):
        xb, yb = batch
        return {"loss": torch.nn.functional.mse_loss(m(xb).squeeze(1).float(), yb)}, len(xb)

    def checked(net, epoch):
        if stop_after is not None and epoch > stop_after:
            raise KeyboardInterrupt
        return validate(net, epoch) if validate else {"val_w0": float(net.weight[0, 0].detach())}
    result = engine.fit(run, model, loader, opt, sched, loss_fn, epochs=epochs, ctx=ctx, log=engine.run_log(run, ctx),
                        settings=settings or FitSettings(), validate=checked, best=best)
    return model, result


def _rows(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMES} for r in csv.DictReader((run / "results.csv").open())]


@pytest.mark.parametrize("settings", [FitSettings(), FitSettings(amp="fp16", clip_grad=0.5, ema=0.8)],
                         ids=["default", "fp16-clip-ema"])
def test_resume_through_fit_gives_the_rows_of_an_uninterrupted_run(tmp_path, settings):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole, _ = _tiny_fit(tmp_path / "a", settings=settings)
    with pytest.raises(KeyboardInterrupt):  # killed while validating epoch 2: last.pt holds epoch 1
        _tiny_fit(tmp_path / "b", stop_after=1, settings=settings)
    assert [r["epoch"] for r in _rows(tmp_path / "b")] == ["1"]
    resumed, _ = _tiny_fit(tmp_path / "b", settings=settings)
    for p, q in zip(whole.parameters(), resumed.parameters()):
        assert torch.allclose(p, q, atol=1e-6), (p, q)
    rows, expected = _rows(tmp_path / "b"), _rows(tmp_path / "a")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"] and list(rows[0]) == list(expected[0])
    for r, e in zip(rows, expected):  # the same numbers, the EMA's validation and the loss scale's steps included
        for k in e:
            assert (float(r[k]) == pytest.approx(float(e[k]), rel=1e-5, abs=1e-7)) if k != "samples_per_rank" \
                else r[k] == e[k], (k, r[k], e[k])
    assert all(r["train_samples"] == "24" and r["samples_per_rank"] == "24" for r in rows)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    saved = load_file(str(tmp_path / "b" / "weights.safetensors"))["weight"]
    # with an EMA the average is validated and saved, not the weights the optimizer stepped
    assert torch.equal(saved, resumed.weight.detach()) == (settings.ema is None)
    assert float(rows[-1]["val_w0"]) == pytest.approx(float(saved[0, 0]), rel=1e-5)
    engine.plot_results(tmp_path / "b")
    assert (tmp_path / "b" / "results.png").stat().st_size > 0
    assert "resuming" in (tmp_path / "b" / "train.log").read_text()


def test_bf16_autocast_runs_through_fit_on_the_cpu(tmp_path):
    seen = []

    class Probe(torch.nn.Linear):
        def forward(self, x):
            out = super().forward(x)
            seen.append(out.dtype)
            return out
    torch.manual_seed(0)
    model = Probe(3, 1)
    before = model.weight.detach().clone()
    data = [(torch.randn(3), torch.randn(())) for _ in range(8)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = engine.make_loader(data, 4, Dist())
    engine.fit(tmp_path, model, loader, opt, engine.schedule(opt, 2, 1),
               lambda m, b: ({"loss": torch.nn.functional.mse_loss(m(b[0]).squeeze(1).float(), b[1])}, len(b[0])),
               epochs=1, ctx=Dist(), log=lambda m: None, settings=FitSettings(amp="bf16"))
    assert seen == [torch.bfloat16, torch.bfloat16]  # two steps, each forward in bf16
    assert model.weight.dtype == torch.float32 and not torch.equal(model.weight, before)  # float32 weights learnt
    assert amp_dtype("auto", torch.device("cpu")) is None  # the default keeps the CPU in float32


def test_gradient_clipping_cuts_every_step_and_is_recorded(tmp_path):
    model, _ = _tiny_fit(tmp_path, epochs=1, settings=FitSettings(clip_grad=1e-3), lr=1.0,
                         optimizer=torch.optim.SGD)
    torch.manual_seed(DATA_SEED)
    torch.randn(24, 3)
    start = torch.nn.Linear(3, 1)  # the initial weights, drawn after the same data
    moved = torch.cat([(p - q).detach().flatten() for p, q in zip(model.parameters(), start.parameters())]).norm()
    # 5 steps of lr <= 1 with gradients cut to norm 1e-3 move the weights by at most 5e-3 (uncut: by ~1)
    assert 0 < float(moved) <= 5e-3 + 1e-7
    row = _rows(tmp_path)[0]
    assert float(row["train_clipped"]) == 1.0 and float(row["train_grad_norm"]) > 1e-3
    assert "gradient norm cut to 0.001" in (tmp_path / "train.log").read_text()


@pytest.mark.parametrize("mode,scores,epoch", [("max", [0.2, 0.7, float("nan"), 0.5], 2),
                                               ("min", [0.9, 0.4, 0.3, float("nan")], 3)])
def test_best_weights_are_those_of_the_epoch_the_named_metric_chose(tmp_path, mode, scores, epoch):
    snapshots = {}

    def validate(net, e):
        snapshots[e] = {k: v.clone() for k, v in net.state_dict().items()}
        return {"val_other": -scores[e - 1], "val_score": scores[e - 1]}
    _, result = _tiny_fit(tmp_path, validate=validate, best=engine.Best("val_score", mode))
    assert result.best_epoch == epoch and result.best == pytest.approx(scores[epoch - 1])
    saved = load_file(str(tmp_path / "weights.safetensors"))
    assert all(torch.equal(saved[k], snapshots[epoch][k]) for k in saved)
    assert not torch.equal(saved["weight"], snapshots[4]["weight"])  # not merely the last epoch's


def test_bad_fit_settings_are_one_clear_line():
    with pytest.raises(ValueError, match="amp must be one of"):
        FitSettings(amp="fp8")
    with pytest.raises(ValueError, match="clip_grad must be a positive"):
        FitSettings(clip_grad=0)
    with pytest.raises(ValueError, match="ema must be a decay"):
        FitSettings(ema=1.0)


def test_resumed_config_keeps_the_saved_settings_but_the_new_epochs(tmp_path):
    from dataclasses import dataclass

    from fashion2stage.runs import save_config

    @dataclass
    class Cfg:
        data: str
        lr: float = 0.1
        epochs: int = 1
        resume: bool = False

    save_config(tmp_path, {"kind": "keypoints", "backbone": "efficientnet_lite0", "num_keypoints": 2,
                           "crop": {"width": 64, "height": 64},
                           "train": {"data": "a.json", "lr": 0.5, "epochs": 1, "gone": 1}})
    assert engine.resumed_config(Cfg("b.json", epochs=3, resume=True), tmp_path, "keypoints") == \
        Cfg("a.json", 0.5, 3, True)


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch
    from fashion2stage import engine

    def train(ctx):  # as the trainers do: the DDP wrappers live in a function that returns before ctx.close()
        torch.manual_seed(ctx.rank)  # different initial weights per rank: DDP must start them from rank 0's
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        data = [(torch.randn(4), torch.randn(())) for _ in range(16)]  # different data per rank: grads averaged
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = engine.make_loader(data, 4, ctx, seed=0)
        sched = engine.schedule(opt, 3 * len(loader), 1)
        def loss_fn(m, batch):
            return {"loss": torch.nn.functional.mse_loss(m(batch[0]).squeeze(1), batch[1])}, len(batch[0])
        for epoch in range(3):
            for p in model[0].parameters():  # first layer frozen in epoch 0 only: the wrapper is rebuilt after it
                p.requires_grad_(epoch > 0)
            net = ctx.wrap(model)
            row = engine.train_one_epoch(net, loader, opt, sched, loss_fn, epoch, ctx)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        sums = ctx.all_gather(float(flat.sum())) + ctx.all_gather(float(flat.abs().sum()))
        if ctx.is_main:
            print("WORLD", ctx.world_size, "ROW", row["train_samples"], row["samples_per_rank"], "SUMS", *sums)

    ctx = engine.start("cpu", threads=1, seed=0)
    try:
        train(ctx)
    finally:
        ctx.close()
""")


@pytest.mark.slow
def test_ddp_keeps_ranks_in_step_through_a_frozen_then_unfrozen_layer(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    line = next(x for x in torchrun(script).stdout.splitlines() if x.startswith("WORLD"))
    parts = line.split()
    assert parts[1] == "2" and parts[3:6] == ["16", "8", "8"]  # 8 of the 16 samples on each rank
    s0, s1, a0, a1 = map(float, parts[7:11])
    assert s0 == pytest.approx(s1, abs=1e-5) and a0 == pytest.approx(a1, abs=1e-5)

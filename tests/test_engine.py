"""The shared training engine on a tiny model: schedule, rank shares, resume = uninterrupted run, results, and
DistributedDataParallel under a real 2-process torchrun (gloo on the CPU)."""
import csv
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fashion2stage import engine
from fashion2stage.distributed import Dist

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
    shares = [list(engine.make_loader(data, 1, Dist(rank=r, world_size=2)).sampler) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 5 and sorted(shares[0] + shares[1]) == data
    balanced = engine.make_loader(list(range(60)), 4, Dist(), sources=[50, 10])
    idx = list(balanced.sampler)
    assert len(idx) == 60 and 20 <= sum(i >= 50 for i in idx) <= 40  # ~30 expected; 10 without balancing


def _tiny_run(run: Path, epochs: int, resume: bool) -> torch.nn.Module:
    """Regression on 24 points, batch 5 (the last batch of each epoch is incomplete), one run folder."""
    torch.manual_seed(0)
    ctx = Dist()
    x = torch.randn(24, 3)
    data = list(zip(x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3))
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    loader = engine.make_loader(data, 5, ctx, seed=3)
    sched = engine.schedule(opt, 4 * len(loader), 3)
    log = engine.run_log(run, ctx)
    state = engine.resume(run, model, opt, sched, ctx, log) if resume else {"epoch": 0}

    def loss_fn(m, batch):
        xb, yb = batch
        return {"loss": torch.nn.functional.mse_loss(m(xb).squeeze(1), yb)}, len(xb)
    for epoch in range(state["epoch"], epochs):
        row = {"epoch": epoch + 1, **engine.train_one_epoch(model, loader, opt, sched, loss_fn, epoch, ctx, log)}
        engine.end_epoch(run, ctx, log, row, model, opt, sched, best=float(epoch))
    return model


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _tiny_run(tmp_path / "a", 4, resume=False)
    _tiny_run(tmp_path / "b", 2, resume=False)
    resumed = _tiny_run(tmp_path / "b", 4, resume=True)
    for p, q in zip(whole.parameters(), resumed.parameters()):
        assert torch.allclose(p, q, atol=1e-6), (p, q)
    rows = list(csv.DictReader((tmp_path / "b" / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert all(r["train_samples"] == "24" and r["samples_per_rank"] == "24" for r in rows)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    engine.plot_results(tmp_path / "b")
    assert (tmp_path / "b" / "results.png").stat().st_size > 0
    assert "resuming" in (tmp_path / "b" / "train.log").read_text()


def test_resumed_config_keeps_the_saved_settings_but_the_new_epochs(tmp_path):
    from dataclasses import dataclass

    from fashion2stage.runs import save_config

    @dataclass
    class Cfg:
        data: str
        lr: float = 0.1
        epochs: int = 1
        resume: bool = False

    save_config(tmp_path, {"kind": "keypoints", "train": {"data": "a.json", "lr": 0.5, "epochs": 1, "gone": 1}})
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

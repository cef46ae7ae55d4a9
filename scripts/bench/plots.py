"""The report's figures: copies of the runs' own plots and new ones (ccp accuracy, throughput vs batch)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.common import BACKENDS, CCP_RUNS, CLASSIFIER, Bench, metrics

def plots(b: Bench, folder: Path, speed: dict, report: Path) -> dict[str, str]:
    """PNG plots in ``folder`` (copies of the runs' own plots, and new ones); name -> path relative to the report."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=80)
        made[name] = folder / f"{name}.png"

    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    copies = [(f"pr_{be}", b.runs / f"det-{be}" / "pr_curve.png") for be in BACKENDS]
    for run, tag in ((CLASSIFIER, "cad"), ("ccp-jitter-default", "ccp")):
        copies += [(f"confusion_{tag}_{p.stem[10:]}", p) for p in sorted((b.runs / run).glob("confusion_*.png"))]
    for name, src in copies:
        if src.is_file():
            made[name] = folder / f"{name}.png"
            shutil.copyfile(src, made[name])
    ccp = [(r, metrics(b, r).get("val", {}).get("keys", {}).get("fine_category")) for r in CCP_RUNS]
    if (ccp := [(r, k) for r, k in ccp if k]):
        fig, ax = plt.subplots(figsize=(4, 3))
        for i, (metric, label) in enumerate((("accuracy", "top-1"), ("ap", "FashionAI AP"))):
            ax.bar([x + 0.4 * i for x in range(len(ccp))], [k[metric] for _, k in ccp], width=0.4, label=label)
        ax.set_xticks([x + 0.2 for x in range(len(ccp))], [r.removeprefix("ccp-") for r, _ in ccp], fontsize=6)
        ax.set_ylabel("ccp fine category, val")
        ax.legend(fontsize=7)
        save(fig, "ccp_accuracy")
    curves = {rt: sorted((v["batch"], v["img_s"]) for n, v in speed.items()
                         if v["runtime"] == rt and v["pipeline"] == "full" and n != "torch-10N" and v.get("img_s"))
              for rt in ("torch", "onnx")}
    if any(curves.values()):
        fig, ax = plt.subplots(figsize=(4, 3))
        for rt, points in curves.items():
            if points:
                ax.plot(*zip(*points), marker="o", label=rt)
        ax.set_xticks(b.profile.batch_sizes)
        ax.set_ylim(0, 1.2 * max(r for pts in curves.values() for _, r in pts))  # room for the legend
        ax.set_xlabel("predict --batch-size")
        ax.set_ylabel("images / s, full pipeline")
        ax.legend(fontsize=7)
        save(fig, "throughput_vs_batch")
    plt.close("all")
    return {k: Path(os.path.relpath(v.resolve(), report.resolve().parent)).as_posix() for k, v in made.items()}



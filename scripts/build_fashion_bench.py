"""Rebuild fashion-bench, the data the shipped model was trained on, from its public sources.

Two ways in:

  download  python scripts/build_fashion_bench.py --download --out DIR [--accept-research-licence]
            fetches each source at its pinned commit (GitHub archives; the Clothing Attribute Dataset's zip from
            the Stanford Digital Repository) into --downloads, where the next run finds it, then converts it.
  read      python scripts/build_fashion_bench.py --out DIR --ccp PATH --cad PATH --landmarks PATH --products PATH
            converts sources already on disk, offline: each PATH is a folder (a clone, an unpacked archive) or a
            .zip / .tar / .tar.gz archive. Give the sources you have; a set without one is skipped.
            The two mix: with --download, only the sources not given a PATH are fetched.

It writes DIR/ccp, DIR/ccp_tags, DIR/cad, DIR/landmarks and DIR/products in the layout and formats of
../shared/data/fashion-bench (COCO detection and keypoint JSON, FashionAI attribute CSVs, tag CSVs, class
folders), each with its LICENSE.txt, and DIR/manifest.json: seed, split fractions, the rules' settings, source
commits, URLs and archive hashes, and counts. Splits are made here, seeded (train/val/test); compare a rebuild with
another through its manifest, not its exact split. Each set is built in DIR/.<set>.building and renamed into place
when it is complete and has been read back with the project's own readers. docs/DATA.md describes every file and
rule. The project's benchmarks and recipe always read ../shared/data/fashion-bench.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers.onnx_cache import cache_root  # noqa: E402
from fashion2stage.errors import DataError, ImageReadError  # noqa: E402
from fashion2stage.io import write_json_atomic, write_text_atomic  # noqa: E402
from fashion_bench import cad, ccp, landmarks, products  # noqa: E402
from fashion_bench.common import SPLITS, Problems  # noqa: E402
from fashion_bench.sources import SET_SOURCE, SOURCES, _git_head, download, licence_text, open_source  # noqa: E402

SETS = ("ccp", "ccp_tags", "cad", "landmarks", "products")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="the folder to write the sets and manifest.json into")
    p.add_argument("--download", action="store_true",
                   help="way 1: fetch every source not given a PATH, at its pinned commit (needs the internet)")
    p.add_argument("--downloads", type=Path, default=None,
                   help="where --download keeps the archives (default: the per-user cache, "
                        "$FASHION2STAGE_CACHE or ~/.cache/fashion2stage, /sources)")
    for key, source in SOURCES.items():
        p.add_argument(f"--{key}", type=Path, metavar="PATH",
                       help=f"way 2: {source.title} ({source.home}): folder or archive"
                       + (" (makes ccp and ccp_tags)" if key == "ccp" else ""))
    p.add_argument("--sets", default=",".join(SETS), help=f"which sets to build (default: all: {','.join(SETS)})")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val/test splits (default 0)")
    p.add_argument("--split", default="0.6,0.15,0.25", help="train,val,test fractions (default 0.6,0.15,0.25)")
    p.add_argument("--min-piece", type=int, default=ccp.MIN_PIECE_PX,
                   help=f"ccp: mask pieces smaller than this many pixels make no box (default {ccp.MIN_PIECE_PX})")
    p.add_argument("--accept-research-licence", action="store_true",
                   help="accept the Clothing Attribute Dataset's research-use-only terms without being asked")
    p.add_argument("--overwrite", action="store_true", help="replace sets that already exist in --out")
    return p.parse_args(argv)


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        f = tuple(float(v) for v in text.split(","))
    except ValueError:
        f = ()
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1) > 1e-6:
        raise SystemExit(f"--split {text!r}: give three fractions train,val,test that sum to 1, e.g. 0.6,0.15,0.25")
    return f


def _sets(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SETS]
    if unknown or not chosen:
        raise SystemExit(f"--sets {text!r}: choose from {', '.join(SETS)}")
    return chosen


def confirm_research(set_name: str, accepted: bool) -> bool:
    """A research-use set is built only once its terms are accepted: by flag, else by answering ``yes``."""
    if accepted:
        return True
    if sys.stdin is None or not sys.stdin.isatty():
        print(f"{set_name}: skipped: its licence allows research use only; pass --accept-research-licence to accept "
              "it without being asked", file=sys.stderr)
        return False
    answer = input(f"{set_name}: use it for non-commercial research only, as its licence requires? [yes/no] ")
    if answer.strip().lower() in ("y", "yes"):
        return True
    print(f"{set_name}: skipped: licence not accepted", file=sys.stderr)
    return False


def _builders(args, fractions):
    seed = args.seed
    return {
        "ccp": lambda root, out, p: ccp.build_ccp(root, out, fractions, seed, args.min_piece, p),
        "ccp_tags": lambda root, out, p: ccp.build_ccp_tags(root, out, fractions, seed, p),
        "cad": lambda root, out, p: cad.build_cad(root, out, fractions, seed, p),
        "landmarks": lambda root, out, p: landmarks.build_landmarks(root, out, fractions, seed, p),
        "products": lambda root, out, p: products.build_products(root, out, fractions, seed, p),
    }


RULES = {  # the settings each set's conversion ran with (docs/DATA.md), for the manifest
    "ccp": lambda args: {"min_piece_px": args.min_piece, "connectivity": 8, "fine_types": ccp.FINE_TYPES},
    "ccp_tags": lambda args: {"tags_left_out": list(ccp.NOT_WORN)},
    "cad": lambda args: {"max_side": cad.MAX_SIDE, "disagreement": "NaN -> no row for that key",
                         "keys": {stem: key for stem, (key, _) in cad.KEYS.items()}},
    "landmarks": lambda args: {"max_side": landmarks.MAX_SIDE, "visibility": "vis 1 -> 2, in_pic 1 -> 1, else 0"},
    "products": lambda args: {},
}


def build_set(name: str, root: Path, origin: dict, args, fractions) -> dict | None:
    """Build one set in ``<out>/.<name>.building``, then move it to ``<out>/<name>``; its manifest entry, or None
    when it could not be built (one line says why)."""
    building = args.out / f".{name}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    problems = Problems()
    try:
        counts = _builders(args, fractions)[name](root, building, problems)
    except (DataError, ImageReadError, OSError) as e:
        print(f"{name}: not built: {e}", file=sys.stderr)
        shutil.rmtree(building, ignore_errors=True)
        return None
    source = SOURCES[SET_SOURCE[name]]
    version = origin.get("commit") or origin.get("sha256")
    write_text_atomic(building / "LICENSE.txt", licence_text(name, source, version))
    final = args.out / name
    if final.exists():
        shutil.rmtree(final)
    building.rename(final)
    print(f"{name}: {json.dumps({k: v for k, v in counts.items() if k in SPLITS})}"
          + (f", {len(problems.lines)} input(s) left out (lines above)" if problems.lines else ""), flush=True)
    return {"source": {"title": source.title, "home": source.home, "licence": source.licence, **origin},
            "seed": args.seed, "split_fractions": dict(zip(SPLITS, fractions)), "rules": RULES[name](args),
            "counts": counts, "left_out": problems.lines,
            "built": datetime.now(timezone.utc).isoformat(timespec="seconds"), "builder_commit": _git_head(ROOT)}


def write_manifest(out: Path, entries: dict) -> None:
    """Merge ``entries`` into ``out/manifest.json`` (sets built by earlier runs keep theirs)."""
    path = out / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest.get("sets"), dict):
            raise ValueError
    except (OSError, ValueError, AttributeError):
        manifest = {"sets": {}}
    manifest["about"] = ("fashion-bench rebuilt by scripts/build_fashion_bench.py from public sources; files and "
                         "rules: docs/DATA.md. Compare rebuilds by this manifest, not by their exact splits.")
    manifest["sets"].update(entries)
    write_json_atomic(path, {"about": manifest.pop("about"), **manifest})


def main(argv=None) -> int:
    args = parse_args(argv)
    fractions, sets = _fractions(args.split), _sets(args.sets)
    given = {key: getattr(args, key) for key in SOURCES}
    ok, planned = True, {}
    for name in sets:  # licences first: nothing is fetched or written for a set its user has not accepted
        key, source = SET_SOURCE[name], SOURCES[SET_SOURCE[name]]
        if given[key] is None and not args.download:
            print(f"{name}: skipped: no source (pass --{key} PATH, or --download)", flush=True)
            continue
        if (args.out / name).exists() and any((args.out / name).iterdir()) and not args.overwrite:
            print(f"{args.out / name}: already there; pass --overwrite to rebuild it", file=sys.stderr)
            ok = False
            continue
        print(licence_text(name, source, f"{source.commit or source.url} (pinned)"), flush=True)
        if source.research_only and not confirm_research(name, args.accept_research_licence):
            ok = False
            continue
        planned[name] = key
    entries = {}
    with tempfile.TemporaryDirectory(prefix="fashion-bench-") as scratch:
        opened = {}
        for key in dict.fromkeys(planned.values()):
            try:
                path = given[key] or download(key, args.downloads or cache_root() / "sources")
                opened[key] = open_source(key, path, Path(scratch), downloaded=given[key] is None)
            except (DataError, OSError) as e:  # a failed download (URLError) is an OSError
                print(f"{key}: cannot open the source: {e}", file=sys.stderr)
                ok = False
        for name, key in planned.items():
            entry = build_set(name, *opened[key], args, fractions) if key in opened else None
            ok = ok and entry is not None
            if entry is not None:
                entries[name] = entry
    if entries:
        write_manifest(args.out, entries)
        print(f"wrote {args.out / 'manifest.json'} ({', '.join(entries)})", flush=True)
    return 0 if ok and entries else 1


if __name__ == "__main__":
    sys.exit(main())

"""Where each set comes from: the public sources at pinned commits, their licences, and the two ways in (download
an archive; read a folder or an archive already on disk). Nothing here touches the network unless ``download`` is
called, which only ``--download`` does.
"""
from __future__ import annotations

import hashlib
import mmap
import re
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fashion2stage.errors import DataError

_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Source:
    title: str
    home: str  # the page a user reads (repository or dataset landing page)
    url: str  # what --download fetches
    commit: str | None  # the pinned commit (None: not a git repository; the archive's sha256 is recorded instead)
    licence: str
    terms: str  # what the licence allows, in one paragraph (printed and written beside the set)
    cite: str
    markers: tuple[str, ...]  # a folder is the source's root when one of these files or folders is in it
    research_only: bool = False


def _github(repo: str, commit: str) -> str:
    return f"https://github.com/{repo}/archive/{commit}.zip"


# Commits: the versions of the files found through the public code index (docs/DATA.md, "Sources").
SOURCES: dict[str, Source] = {
    "ccp": Source(
        title="Clothing Co-Parsing (CCP)", home="https://github.com/bearpaw/clothing-co-parsing",
        url=_github("bearpaw/clothing-co-parsing", "cbc8deae85f65178394eded0817a5c1b1019b63d"),
        commit="cbc8deae85f65178394eded0817a5c1b1019b63d", licence="Apache-2.0",
        terms="Apache License 2.0: use, modify and redistribute, also commercially, keeping the licence and notices.",
        cite="W. Yang, P. Luo, L. Lin, Clothing Co-Parsing by Joint Image Segmentation and Labeling, CVPR 2014.",
        markers=("label_list.mat",)),
    "cad": Source(
        title="Clothing Attribute Dataset (CAD)", home="https://purl.stanford.edu/tb980qz1002",
        # The Stanford Digital Repository's file URL for the dataset's zip; not a git repository, so there is no
        # commit to pin: the manifest records the archive's sha256. (Not verified from this build's machines,
        # which have no internet; if it moves, download the zip from the landing page and pass --cad ZIP.)
        url="https://stacks.stanford.edu/file/druid:tb980qz1002/ClothingAttributeDataset.zip", commit=None,
        licence="research use only",
        terms="For non-commercial research only; models trained on it inherit that restriction (README, "
              "'The shipped model'). Read the terms on the landing page before use.",
        cite="H. Chen, A. Gallagher, B. Girod, Describing Clothing by Semantic Attributes, ECCV 2012.",
        markers=("labels/category_GT.mat",), research_only=True),
    "landmarks": Source(
        title="Fashion Landmark Detection and Category Classification for Robotics, robot set",
        home="https://github.com/ThomasZiegler/Fashion_Landmark_Detection_and_Category_Classification",
        url=_github("ThomasZiegler/Fashion_Landmark_Detection_and_Category_Classification",
                    "728e68320bb2b4a75a872cf2761bc4f1361b69b9"),
        commit="728e68320bb2b4a75a872cf2761bc4f1361b69b9", licence="GPL-3.0",
        terms="GNU General Public License v3: works derived from it (trained weights, arguably) must be GPL-3.0 "
              "when distributed.",
        cite="T. Ziegler et al., Fashion Landmark Detection and Category Classification for Robotics, ICARSC 2020.",
        markers=("datasets/robot/info.csv", "robot/info.csv", "info.csv")),
    "products": Source(
        title="clothing-dataset-small", home="https://github.com/alexeygrigorev/clothing-dataset-small",
        url=_github("alexeygrigorev/clothing-dataset-small", "36364be1969242c019705255cd87aed00c73a939"),
        commit="36364be1969242c019705255cd87aed00c73a939", licence="CC0",
        terms="CC0 1.0: no rights reserved; free for any purpose (the repository's README: 'can be freely used for "
              "any purpose').",
        cite="A. Grigorev, clothing-dataset (the top-10 classes subset).",
        markers=("train",)),
}
SET_SOURCE = {"ccp": "ccp", "ccp_tags": "ccp", "cad": "cad", "landmarks": "landmarks", "products": "products"}


def licence_text(set_name: str, source: Source, version: str | None) -> str:
    """The licence note printed for a set and written as ``<set>/LICENSE.txt``; ``version``: a commit, an archive's
    sha256 or a URL."""
    return (f"{set_name}/ is converted from {source.title}\n  {source.home}\n  version: {version or 'unrecorded'}\n"
            f"Licence: {source.licence}. {source.terms}\nCite: {source.cite}\n")


def sha256(path: Path) -> str:
    """Of a non-empty file, mapped rather than read (a source archive can be hundreds of MB)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return hashlib.sha256(data).hexdigest()


def download(key: str, folder: Path) -> Path:
    """Fetch ``SOURCES[key].url`` into ``folder`` (kept there: a second run reuses it); returns the archive."""
    source = SOURCES[key]
    name = f"{key}-{source.commit}.zip" if source.commit else Path(source.url).name
    target = folder / name
    if target.is_file():
        print(f"{key}: using {target} (already downloaded)", flush=True)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    print(f"{key}: downloading {source.url}", flush=True)
    with urllib.request.urlopen(source.url, timeout=60) as response, open(part, "wb") as f:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            f.write(chunk)
    part.replace(target)
    return target


def _is_archive(path: Path) -> bool:
    return path.is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path))


def extract(archive: Path, into: Path) -> str | None:
    """Unpack a zip or tar archive into ``into`` (refusing members that would land outside it); returns the commit
    a GitHub archive names (its zip comment or tar pax header), else None."""
    into.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            _inside(archive, z.namelist())
            z.extractall(into)
            comment = z.comment.decode("ascii", "replace").strip()
    else:
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if m.isfile() or m.isdir()]  # no links, devices or fifos
            _inside(archive, [m.name for m in members])
            t.extractall(into, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            comment = str(t.pax_headers.get("comment", "")).strip()
    return comment if _COMMIT.fullmatch(comment) else None


def _inside(archive: Path, names: list[str]) -> None:
    for name in names:
        p = PurePosixPath(name)
        if p.is_absolute() or ".." in p.parts:
            raise DataError(archive, f"member {name!r} would land outside the extraction folder")


def find_root(base: Path, markers: tuple[str, ...], depth: int = 4) -> Path | None:
    """The shallowest folder at most ``depth`` levels under ``base`` (``base`` included) holding one of ``markers``,
    trying the markers in order."""
    levels, frontier = [], [base]
    for _ in range(depth + 1):
        levels.append(frontier)
        frontier = [c for d in frontier for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    for marker in markers:
        for level in levels:
            for folder in level:
                if (folder / marker).exists():
                    return folder
    return None


def _commit_in_names(root: Path, base: Path) -> str | None:
    """The commit in a GitHub archive's top folder name (``<repo>-<commit>``), from ``root`` up to ``base``."""
    for folder in (root, *root.parents):
        named = re.search(r"-([0-9a-f]{40})$", folder.name)
        if named:
            return named.group(1)
        if folder == base:
            return None
    return None


def _git_head(folder: Path) -> str | None:
    """The checked-out commit when ``folder`` is itself a git clone of the source."""
    if not (folder / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head if _COMMIT.fullmatch(head) else None


def open_source(key: str, path: Path, scratch: Path, downloaded: bool = False) -> tuple[Path, dict]:
    """The source's root folder from a folder or an archive (unpacked under ``scratch``), and what is known of its
    version for the manifest: ``{"path", "commit", "sha256", "pinned_commit", "downloaded_from"}``."""
    source = SOURCES[key]
    origin: dict = {"path": path.name, "pinned_commit": source.commit}
    if downloaded:
        origin["downloaded_from"] = source.url
    if not path.exists():
        raise DataError(path, f"{key}: no such file or folder")
    if _is_archive(path):
        origin["sha256"] = sha256(path)
        origin["commit"] = extract(path, scratch / key)
        base = scratch / key
    elif path.is_dir():
        base = path
    else:
        raise DataError(path, f"{key}: neither a folder nor a zip/tar archive")
    root = find_root(base, source.markers)
    if root is None and key == "products":
        root = base  # a class-folder tree without split folders
    if root is None:
        raise DataError(path, f"{key}: not the {source.title} layout (no {' or '.join(source.markers)} found)")
    if not origin.get("commit"):
        origin["commit"] = _commit_in_names(root, base) or _git_head(root)
    if downloaded and source.commit and origin.get("commit") not in (None, source.commit):
        print(f"{key}: the archive names commit {origin['commit']}, not the pinned {source.commit}", file=sys.stderr)
    return root, origin

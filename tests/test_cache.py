"""The one cache (fashion2stage/cache.py) and the one photo loop (fashion2stage/photo_loop.py): keys change with the
model's bytes and the settings, a torn entry is recomputed, an interrupted loop resumes without recomputing what it
finished, an unreadable photo is named and skipped, and two users of the cache never read each other's entries."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion2stage.cache import CACHE_ENV, Shelf, cache_root, key
from fashion2stage.detections import detect_cached
from fashion2stage.photo_loop import detect_photos, photo_keys
from fashion2stage.pseudo_boxes import add_pseudo_boxes
from fashion2stage.records import Dataset, Garment, ImageRecord

TYPES = ["blouse", "skirt"]


class GreyDetector:
    """A real detector of a single rule: one blouse over the photo's top half, scored by its mean grey level / 255;
    ``run_files`` are what it was "loaded from" (its identity for the cache). Counts the photos it sees; with
    ``stop_after`` it is interrupted (KeyboardInterrupt) once it has seen that many."""

    def __init__(self, run_files=(), stop_after: int | None = None):
        from fashion2stage.labels import LabelSet
        self.labels = LabelSet(garment_types=TYPES)
        self.run_files, self.stop_after, self.seen = tuple(run_files), stop_after, 0

    def predict(self, images, conf=0.25, batch_size=8):
        if self.stop_after is not None and self.seen + len(images) > self.stop_after:
            raise KeyboardInterrupt
        self.seen += len(images)
        out = []
        for im in images:
            h, w = im.shape[:2]
            score = float(im.mean()) / 255
            out.append([Garment("blouse", np.array([0.0, 0.0, w, h / 2]), score=score)] if score >= conf else [])
        return out


@pytest.fixture
def photos(tmp_path, monkeypatch) -> list[ImageRecord]:
    """Six small grey photos (levels 100..225) and a cache of their own."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "images").mkdir()
    recs = []
    for i in range(6):
        Image.fromarray(np.full((24, 32, 3), 100 + 25 * i, np.uint8)).save(tmp_path / "images" / f"{i}.png")
        recs.append(ImageRecord(file=f"images/{i}.png", root=tmp_path))
    return recs


@pytest.fixture
def run_files(tmp_path) -> list[Path]:
    weights, config = tmp_path / "weights.bin", tmp_path / "config.json"
    weights.write_bytes(b"weights v1")
    config.write_text('{"kind": "detector"}')
    return [weights, config]


def test_a_key_changes_with_the_model_bytes_and_the_settings(photos, run_files):
    det = GreyDetector(run_files)
    first = detect_cached(det, photos, conf=0.25)
    assert det.seen == 6 and first["images/5.png"][0].score == pytest.approx(225 / 255)
    detect_cached(det, photos, conf=0.25)
    assert det.seen == 6  # all from the cache
    run_files[0].write_bytes(b"weights v2")  # same size, other bytes: other weights
    detect_cached(det, photos, conf=0.25)
    assert det.seen == 12
    detect_cached(det, photos, conf=0.5)  # another setting
    assert det.seen == 18
    detect_cached(det, photos, conf=0.25)
    assert det.seen == 18  # the v2 entries at 0.25 are still there
    assert key("a", {"x": 1, "y": 2}) == key("a", {"y": 2, "x": 1}) != key("a", {"x": 1, "y": 3})


def test_a_torn_or_damaged_entry_is_recomputed_never_trusted(photos, run_files):
    det, said = GreyDetector(run_files), []
    detect_cached(det, photos, conf=0.25)
    entries = sorted((cache_root() / "detections").rglob("*.json"))
    assert len(entries) == 6
    data = entries[0].read_bytes()
    entries[0].write_bytes(data[:len(data) // 2])  # torn: a write cut short
    flipped = bytearray(entries[1].read_bytes())
    flipped[-3] ^= 0x01  # one flipped bit in its payload
    entries[1].write_bytes(bytes(flipped))
    again = detect_cached(det, photos, conf=0.25, log=said.append)
    assert det.seen == 6 + 2  # only the two damaged photos were run again
    assert len(said) == 2 and all("damaged" in s for s in said) and {str(entries[0]), str(entries[1])} == {
        s.split("cache entry ")[1].split(" is damaged")[0] for s in said}
    assert [g.score for gs in again.values() for g in gs] == pytest.approx([(100 + 25 * i) / 255 for i in range(6)])
    detect_cached(det, photos, conf=0.25, log=said.append)
    assert det.seen == 8 and len(said) == 2  # rewritten whole


def test_an_interrupted_loop_resumes_without_recomputing_done_photos(photos, run_files):
    with pytest.raises(KeyboardInterrupt):
        detect_cached(GreyDetector(run_files, stop_after=4), photos, conf=0.25, batch_size=2)
    det = GreyDetector(run_files)
    done = detect_cached(det, photos, conf=0.25, batch_size=2)
    assert det.seen == 2 and len(done) == 6  # the two batches finished before the interrupt were kept


def test_an_unreadable_photo_is_named_in_one_line_and_skipped(photos, run_files, tmp_path):
    (tmp_path / "images/broken.jpg").write_bytes(b"not a jpeg")
    recs = photos + [ImageRecord(file="images/broken.jpg", root=tmp_path)]
    det, said = GreyDetector(run_files), []
    found = detect_cached(det, recs, tmp_path / "record.json", conf=0.25, log=said.append)
    assert sorted(found) == sorted(r.file for r in photos) and det.seen == 6
    assert len(said) == 1 and "broken.jpg" in said[0] and "\n" not in said[0]
    # the loop itself: None for it, the others computed
    values, reused = detect_photos([r.path for r in recs], None, 0.0, lambda i, image, gs: image.shape[0], log=said.append)
    assert values == [24] * 6 + [None] and reused == 0 and len(said) == 2


def test_two_users_of_the_cache_do_not_collide(photos, run_files, tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(b"another detector")
    a, b = GreyDetector(run_files), GreyDetector([other, run_files[1]])
    detect_cached(a, photos, conf=0.25)
    detect_cached(b, photos, conf=0.25)
    assert a.seen == b.seen == 6  # another detector's garments are its own entries
    # the same photos, the same detector, another user (pseudo-boxes): its own shelf and its own entries
    ds = Dataset(root=tmp_path, records=[ImageRecord(file=r.file, root=r.root, image_class="top", item_type="blouse") for r in photos],
                 labels=a.labels, source="folders")
    boxed = add_pseudo_boxes(ds, "detector:a", detector=a, log=lambda s: None)
    assert a.seen == 12 and all(r.garments[0].box_xyxy[3] == 12 for r in boxed.records)
    assert len(list((cache_root() / "pseudo_boxes").rglob("*.json"))) == 6
    assert len(list((cache_root() / "detections").rglob("*.json"))) == 12
    # shelves of one key and different names, or codecs, are different files
    k = key("same parts")
    Shelf("type_head", codec="npz").put(k, {"features": np.ones((2, 3), np.float32), "labels": np.array(["a", "b"])})
    Shelf("photo_kind", codec="npz").put(k, {"features": np.zeros((1, 3), np.float32)})
    got = Shelf("type_head", codec="npz").get(k)
    assert got["features"].shape == (2, 3) and list(got["labels"]) == ["a", "b"]
    assert Shelf("photo_kind", codec="npz").get(k)["features"].shape == (1, 3)


def test_a_command_named_cache_folder_is_used_instead_of_the_per_user_one(photos, run_files, tmp_path):
    det = GreyDetector(run_files)
    detect_cached(det, photos, conf=0.25, cache=tmp_path / "run-cache")
    assert len(list((tmp_path / "run-cache" / "detections").rglob("*.json"))) == 6
    assert not (cache_root() / "detections").exists()
    keys = photo_keys([photos[0].path], "x")
    photos[0].path.write_bytes(photos[1].path.read_bytes())  # the photo changed: another key
    assert photo_keys([photos[0].path], "x") != keys

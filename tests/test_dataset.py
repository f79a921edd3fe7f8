"""Listing, sampling, labels and reading of image folders."""

import os

import numpy as np
import pytest
from PIL import Image

from builders import image_folder
from guiapp.core.data.dataset import (
    ReadLog,
    batches,
    iter_tensors,
    labels_from_csv,
    labels_from_subfolders,
    list_images,
    seeded_order,
)
from guiapp.core.errors import DatasetError
from guiapp.core.data.preprocess import preset
from guiapp.core.progress import CancelToken
from guiapp.core.errors import Cancelled


def test_listing_is_recursive_sorted_and_filters_extensions(tmp_path):
    image_folder(tmp_path / "b", 2, ext=".JPG")
    image_folder(tmp_path / "a" / "deep", 2)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "a" / "model.onnx").write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images([tmp_path])]
    assert names == ["a/deep/img_000.png", "a/deep/img_001.png", "b/img_000.JPG", "b/img_001.JPG"]


def test_listing_survives_symlink_loops_and_deduplicates(tmp_path):
    image_folder(tmp_path / "x", 3)
    os.symlink(tmp_path, tmp_path / "x" / "loop")
    files = list_images([tmp_path, tmp_path / "x"])
    assert len(files) == 3


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list_images([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no image files"):
        list_images([tmp_path / "empty"])
    with pytest.raises(DatasetError, match="no calibration folder"):
        list_images([])


def test_seeded_order_is_deterministic_and_seed_dependent(tmp_path):
    files = image_folder(tmp_path, 30)
    a, b, c = seeded_order(files, 1), seeded_order(files, 1), seeded_order(files, 2)
    assert a == b and a != c and sorted(a) == sorted(files)


def test_labels_from_integer_and_named_subfolders(tmp_path):
    for digit in ("3", "7"):
        image_folder(tmp_path / "digits" / digit, 2)
    files = list_images([tmp_path / "digits"])
    labels = labels_from_subfolders(files, [tmp_path / "digits"])
    assert [labels.get(p) for p in files] == [3, 3, 7, 7]
    for name in ("zebra", "cat"):
        image_folder(tmp_path / "named" / name, 1)
    files = list_images([tmp_path / "named"])
    labels = labels_from_subfolders(files, [tmp_path / "named"])
    assert labels.class_names == ("cat", "zebra")
    assert [labels.get(p) for p in files] == [0, 1]


def test_flat_folder_has_no_subfolder_labels(tmp_path):
    files = image_folder(tmp_path, 2)
    with pytest.raises(DatasetError, match="sub-folders"):
        labels_from_subfolders(files, [tmp_path])


def test_csv_labels_match_relative_paths_then_names(tmp_path):
    files = image_folder(tmp_path / "imgs" / "sub", 3)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,class_index\nsub/img_000.png,5\nimg_001.png,9\n")
    labels = labels_from_csv(csv, [tmp_path / "imgs"])
    assert [labels.get(p) for p in files] == [5, 9, None]


def test_csv_named_labels_are_numbered_in_sorted_order(tmp_path):
    files = image_folder(tmp_path, 2)
    csv = tmp_path / "l.csv"
    csv.write_text("file,label\nimg_000.png,dog\nimg_001.png,cat\n")
    labels = labels_from_csv(csv, [tmp_path])
    assert labels.class_names == ("cat", "dog")
    assert [labels.get(p) for p in files] == [1, 0]


def test_csv_without_the_right_columns_is_refused(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("name,klass\na.png,1\n")
    with pytest.raises(DatasetError, match="'file' column"):
        labels_from_csv(csv, [tmp_path])


def test_stream_skips_unreadable_files_and_stops_at_the_limit(tmp_path):
    files = image_folder(tmp_path, 6)
    (tmp_path / "broken.png").write_bytes(b"garbage")
    order = [tmp_path / "broken.png", *files]
    log = ReadLog()
    spec = preset("unit").resolved("nchw", (8, 8))
    out = list(iter_tensors(order, spec, 4, log))
    assert [p for p, _ in out] == files[:4]
    assert log.used == files[:4]
    assert [p.name for p, _ in log.skipped] == ["broken.png"]
    assert out[0][1].shape == (3, 8, 8)


def test_stream_honours_cancel(tmp_path):
    files = image_folder(tmp_path, 6)
    token = CancelToken()
    spec = preset("unit").resolved("nchw", (8, 8))
    stream = iter_tensors(files, spec, 6, ReadLog(), token)
    next(stream)
    token.cancel()
    with pytest.raises(Cancelled):
        next(stream)


def test_batches_stack_and_keep_the_remainder():
    stream = ((f"p{i}", np.full((2,), i, np.float32)) for i in range(5))
    got = list(batches(stream, 2))
    assert [len(p) for p, _ in got] == [2, 2, 1]
    assert got[2][1].shape == (1, 2) and got[2][1][0, 0] == 4

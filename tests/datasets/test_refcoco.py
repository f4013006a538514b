"""RefCOCO-family loader: COCO instances + refs exported to JSON; pickles refused."""

import json
from pathlib import Path

import numpy as np
import pytest

from zsgrounding.datasets import LoadReport, MalformedEntryWarning, RefExpr, load_refcoco
from zsgrounding.errors import DatasetError

INSTANCES = {
    "images": [
        {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "width": 640, "height": 480},
        {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "width": 500, "height": 375},
    ],
    "annotations": [
        {"id": 10, "image_id": 1, "bbox": [100, 50, 200, 100], "category_id": 1},
        {"id": 11, "image_id": 1, "bbox": [0.5, 0, 10, 20], "category_id": 1},
        {"id": 20, "image_id": 2, "bbox": [30, 40, 50, 60], "category_id": 3},
    ],
}
REFS = [
    {
        "ref_id": 0,
        "ann_id": 10,
        "image_id": 1,
        "split": "val",
        "sentences": [{"sent": "man on the left", "sent_id": 0}, {"sent": "left guy", "sent_id": 1}],
    },
    {
        "ref_id": 1,
        "ann_id": 11,
        "image_id": 1,
        "split": "testA",
        "sentences": [{"sent": "tiny one", "sent_id": 2}],
    },
    {
        "ref_id": 2,
        "ann_id": 20,
        "image_id": 2,
        "split": "val",
        "sentences": [{"sent": "red car", "sent_id": 3}],
    },
]


def _files(tmp_path, refs=REFS):
    inst = tmp_path / "instances.json"
    inst.write_text(json.dumps(INSTANCES))
    ref_path = tmp_path / "refs.json"
    ref_path.write_text(json.dumps(refs))
    return inst, ref_path


def test_val_split_by_hand(tmp_path):
    inst, refs = _files(tmp_path)
    out = load_refcoco(inst, refs, split="val", image_root=tmp_path / "img")
    assert [r.id for r in out] == ["0_0", "0_1", "2_0"]
    first = out[0]
    assert isinstance(first, RefExpr)
    assert first.sentence == "man on the left" and first.split == "val"
    np.testing.assert_array_equal(first.box, [100, 50, 300, 150])
    assert (first.width, first.height) == (640, 480)
    assert first.image == tmp_path / "img" / "COCO_train2014_000000000001.jpg"
    assert first.meta == {"ref_id": 0, "ann_id": 10, "image_id": 1}
    np.testing.assert_array_equal(out[2].box, [30, 40, 80, 100])


def test_other_splits_and_all(tmp_path):
    inst, refs = _files(tmp_path)
    test_a = load_refcoco(inst, refs, split="testA")
    assert [r.id for r in test_a] == ["1_0"]
    np.testing.assert_array_equal(test_a[0].box, [0.5, 0, 10.5, 20])
    assert test_a[0].image == Path("COCO_train2014_000000000001.jpg")
    assert len(load_refcoco(inst, refs, split=None)) == 4


def test_unknown_split_is_an_error(tmp_path):
    inst, refs = _files(tmp_path)
    with pytest.raises(DatasetError, match="testC"):
        load_refcoco(inst, refs, split="testC")


@pytest.mark.parametrize("name", ["refs(unc).p", "refs.pkl"])
def test_pickle_refused_without_reading(tmp_path, name):
    inst, _ = _files(tmp_path)
    pickled = tmp_path / name
    pickled.write_bytes(b"\x80\x04this would be code")
    with pytest.raises(DatasetError, match="pickle") as info:
        load_refcoco(inst, pickled)
    assert "json.dump" in str(info.value)


def test_malformed_ref_named_by_ref_id(tmp_path):
    refs = [*REFS, {"ref_id": 9, "ann_id": 999, "image_id": 2, "split": "val", "sentences": [{"sent": "x"}]}]
    inst, ref_path = _files(tmp_path, refs)
    with pytest.raises(DatasetError, match=r"'9'.*ann_id 999"):
        load_refcoco(inst, ref_path)
    report = LoadReport()
    with pytest.warns(MalformedEntryWarning, match="'9'"):
        out = load_refcoco(inst, ref_path, skip_malformed=True, report=report)
    assert [r.id for r in out] == ["0_0", "0_1", "2_0"] and report.skipped_ids == ["9"]

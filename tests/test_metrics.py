"""The STVG evaluator against hand-computed values and a plain-loop reading of the protocol."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from zsgrounding.boxes import box_iou, box_iou_matrix
from zsgrounding.metrics import (
    evaluate,
    evaluate_temporal,
    evaluated_frames,
    rec_accuracy,
    temporal_iou,
)
from zsgrounding.metrics_reference import reference_tiou_viou
from zsgrounding.types import GroundTruth, Tube


def dense(start, end, box=(0, 0, 10, 10)):
    ids = np.arange(start, end)
    return Tube(start, end, ids, np.tile(np.asarray(box, float), (ids.size, 1)))


def gt_of(tube, segment=(0, 100), fps=5.0, qtype=None):
    return GroundTruth(tube=tube, fps=fps, segment=segment, qtype=qtype)


# ----------------------------------------------------------------------------- boxes and spans


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [2.5, 2.5, 7.5, 7.5], [0, 0, 0, 0]], float)
    # identical; half shift 50/150; touching edge; inner quarter 25/100; empty boxes
    assert_allclose(box_iou(a, b), [1.0, 1 / 3, 0.0, 0.25, 0.0])
    assert_allclose(box_iou_matrix(a[:2], b[:2]), [[1.0, 1 / 3], [1.0, 1 / 3]])


def test_temporal_iou_half_open():
    assert temporal_iou((10, 20), (15, 25)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 10), (10, 20)) == 0.0  # touching half-open spans do not overlap
    assert temporal_iou((3, 7), (3, 7)) == 1.0
    assert temporal_iou((10, 21), (10, 20)) == pytest.approx(10 / 11)


# ----------------------------------------------------------------------------- evaluated frames


def test_tubedetr_sampling_hand_values():
    # 25 fps, r = 0.2: every 5th frame; HC-STVG's segment stops before the last frame.
    ids = evaluated_frames((0, 499), 25.0)
    assert ids.tolist() == list(range(0, 495 + 1, 5))
    # 24 fps, r = 5/24: int(f*r) grows at 5, 10, 15, 20, 24 (= 5.0 exactly), 29, ...
    assert evaluated_frames((0, 30), 24.0).tolist() == [0, 5, 10, 15, 20, 24, 29]
    # A segment that starts mid-bucket keeps its first frame, then the next bucket's first.
    assert evaluated_frames((7, 20), 25.0).tolist() == [7, 10, 15]
    # 5 fps keeps every frame; 500 of them are thinned to ids[(j * 500) // 200].
    thin = evaluated_frames((0, 500), 5.0)
    assert thin.size == 200
    assert thin[:6].tolist() == [0, 2, 5, 7, 10, 12]
    assert evaluated_frames((0, 500), 5.0, frames="all").size == 500


@pytest.mark.parametrize("frames", ["tubedetr", "all"])
def test_vectorised_equals_frame_loop_on_random_tubes(frames):
    rng = np.random.default_rng(0)
    preds, gts = {}, {}
    for i in range(150):
        n = int(rng.integers(40, 700))
        fps = float(rng.choice([5.0, 10.0, 24.0, 25.0, 29.97, 30.0]))
        seg = (int(rng.integers(0, 20)), n)
        gs = int(rng.integers(seg[0], n - 5))
        ge = int(rng.integers(gs + 1, n + 1))
        ps = int(rng.integers(0, n - 1))
        pe = int(rng.integers(ps + 1, n + 1))
        # sparse GT boxes and predictions that carry boxes on a subset of frames, some outside the span
        g_ids = np.sort(rng.choice(np.arange(gs, ge), size=max(1, (ge - gs) * 3 // 4), replace=False))
        p_ids = np.sort(rng.choice(np.arange(0, n), size=max(1, n // 2), replace=False))
        g_xy = rng.uniform(0, 10, (g_ids.size, 2))
        p_xy = rng.uniform(0, 10, (p_ids.size, 2))
        g_boxes = np.concatenate([g_xy, g_xy + rng.uniform(20, 40, (g_ids.size, 2))], 1)
        p_boxes = np.concatenate([p_xy, p_xy + rng.uniform(20, 40, (p_ids.size, 2))], 1)
        gts[str(i)] = gt_of(Tube(gs, ge, g_ids, g_boxes), segment=seg, fps=fps)
        preds[str(i)] = Tube(ps, pe, p_ids, p_boxes)
    result = evaluate(preds, gts, frames=frames)
    expected = np.array([reference_tiou_viou(preds[k], gts[k], frames) for k in gts])
    assert_allclose(result.tiou, expected[:, 0], rtol=0, atol=1e-12)
    assert_allclose(result.viou, expected[:, 1], rtol=0, atol=1e-12)
    assert (result.viou > 0.05).sum() > 20  # the random case really exercises overlaps


# ----------------------------------------------------------------------------- hand-computed STVG cases


def test_identical_tubes_score_one():
    gt = {"a": gt_of(dense(10, 20))}
    r = evaluate({"a": dense(10, 20)}, gt, frames="all")
    assert r.summary() == {"m_tIoU": 100.0, "m_vIoU": 100.0, "vIoU@0.3": 100.0, "vIoU@0.5": 100.0, "n": 1}


def test_partial_overlap_hand_value():
    # GT [10,20), pred [15,25) with perfect boxes: |I| = 5, |U| = 15.
    r = evaluate({"a": dense(15, 25)}, {"a": gt_of(dense(10, 20))}, frames="all")
    assert_allclose(r.tiou, [5 / 15])
    assert_allclose(r.viou, [5 / 15])
    # Same spans, boxes shifted by half their width: IoU 1/3 on each of the 5 frames.
    r = evaluate({"a": dense(15, 25, (5, 0, 15, 10))}, {"a": gt_of(dense(10, 20))}, frames="all")
    assert_allclose(r.viou, [5 * (1 / 3) / 15])


def test_no_overlap_scores_zero():
    r = evaluate({"a": dense(20, 30)}, {"a": gt_of(dense(10, 20))}, frames="all")
    assert r.tiou.tolist() == [0.0] and r.viou.tolist() == [0.0]


def test_end_is_exclusive():
    # One extra predicted frame: |U| = 11, |I| = 10.
    r = evaluate({"a": dense(10, 21)}, {"a": gt_of(dense(10, 20))}, frames="all")
    assert_allclose(r.tiou, [10 / 11])
    assert_allclose(r.viou, [10 / 11])


def test_missing_frames_and_strict_thresholds():
    # Pred boxes on frames 0..4 only of a [0,10) span: vIoU exactly 0.5, so @0.5 fails (strict).
    pred = Tube(0, 10, np.arange(5), np.tile([0, 0, 10, 10], (5, 1)))
    r = evaluate({"a": pred}, {"a": gt_of(dense(0, 10))}, frames="all")
    assert_allclose(r.viou, [0.5])
    s = r.summary()
    assert s["vIoU@0.5"] == 0.0 and s["vIoU@0.3"] == 100.0
    # GT frames without a box count in the union but add nothing: GT boxes on 0..5 of [0,10).
    gt = Tube(0, 10, np.arange(6), np.tile([0, 0, 10, 10], (6, 1)))
    r = evaluate({"a": dense(0, 10)}, {"a": gt_of(gt)}, frames="all")
    assert_allclose(r.viou, [0.6])


def test_boxes_outside_predicted_span_do_not_count():
    pred = Tube(15, 20, np.arange(10, 20), np.tile([0, 0, 10, 10], (10, 1)))
    r = evaluate({"a": pred}, {"a": gt_of(dense(10, 20))}, frames="all")
    assert_allclose(r.viou, [0.5])  # I = [15,20), U = [10,20)


def test_missing_prediction_counts_as_zero():
    gts = {"a": gt_of(dense(0, 10)), "b": gt_of(dense(0, 10))}
    r = evaluate({"a": dense(0, 10)}, gts, frames="all")
    assert r.missing == ["b"]
    assert r.summary()["m_vIoU"] == 50.0 and r.summary()["n"] == 2


def test_tubedetr_frames_count_only_sampled_frames():
    # 25 fps: evaluated frames 0, 5, 10, ... GT [10,20) -> {10, 15}; pred [10,20) boxes only on 11..19.
    pred = Tube(10, 20, np.arange(11, 20), np.tile([0, 0, 10, 10], (9, 1)))
    r = evaluate({"a": pred}, {"a": gt_of(dense(10, 20), segment=(0, 100), fps=25.0)})
    assert_allclose(r.viou, [0.5])  # frame 15 hits, frame 10 has no predicted box


def test_cgstvg_variant_interpolates_and_shortens_gt():
    ids = np.arange(10, 20)
    gt = Tube(10, 20, ids, np.stack([ids, 0 * ids, ids + 10, 0 * ids + 10], 1))
    pred = Tube(10, 20, [10, 18], [[10, 0, 20, 10], [18, 0, 28, 10]])
    gts = {"a": gt_of(gt, segment=(0, 40), fps=25.0)}
    r = evaluate({"a": pred}, gts, protocol="cgstvg")
    # GT scored as [10,19): interpolation is exact on 11..17, frame 18 is given: 9 hits of 10 frames.
    assert_allclose(r.tiou, [9 / 10])
    assert_allclose(r.viou, [9 / 10])
    r = evaluate({"a": pred}, gts, frames="all")
    assert_allclose(r.viou, [2 / 10])  # without interpolation only frames 10 and 18 have boxes


def test_cgstvg_shortens_only_an_inclusive_gt_end():
    # HC-STVG (the default flag): a prediction equal to the GT [10,20) is scored against [10,19):
    # tIoU = vIoU = 9/10, as before. VidSTG (flag False): the GT is scored in full, 1.
    gt = dense(10, 20)
    hc = {"a": gt_of(gt, segment=(0, 40), fps=25.0)}
    vidstg = {"a": GroundTruth(tube=gt, fps=25.0, segment=(0, 40), cgstvg_end_inclusive=False)}
    r = evaluate({"a": dense(10, 20)}, hc, protocol="cgstvg")
    assert_allclose(r.tiou, [9 / 10])
    assert_allclose(r.viou, [9 / 10])
    r = evaluate({"a": dense(10, 20)}, vidstg, protocol="cgstvg")
    assert r.summary() == {"m_tIoU": 100.0, "m_vIoU": 100.0, "vIoU@0.3": 100.0, "vIoU@0.5": 100.0, "n": 1}
    # A prediction one frame short of the VidSTG GT: |I| = 9, |U| = 10.
    r = evaluate({"a": dense(10, 19)}, vidstg, protocol="cgstvg")
    assert_allclose(r.tiou, [9 / 10])
    assert_allclose(r.viou, [9 / 10])


@pytest.mark.parametrize("protocol", ["tubedetr", "cgstvg"])
def test_zero_length_gt_scores_zero_and_counts(protocol):
    # GT [5,5) (VidSTG's begin_fid == end_fid): no prediction overlaps it, even one around it.
    gts = {
        "empty": GroundTruth(tube=Tube(5, 5), fps=5.0, segment=(0, 20), cgstvg_end_inclusive=False),
        "full": GroundTruth(tube=dense(0, 10), fps=5.0, segment=(0, 20), cgstvg_end_inclusive=False),
    }
    r = evaluate({"empty": dense(0, 10), "full": dense(0, 10)}, gts, protocol=protocol)
    assert r.tiou.tolist() == [0.0, 1.0] and r.viou.tolist() == [0.0, 1.0]
    assert r.summary()["m_tIoU"] == 50.0 and r.summary()["m_vIoU"] == 50.0 and r.summary()["n"] == 2


def test_qtype_splits():
    gts = {
        "d": gt_of(dense(0, 10), qtype="declarative"),
        "q": gt_of(dense(0, 10), qtype="interrogative"),
    }
    r = evaluate({"d": dense(0, 10), "q": dense(20, 30)}, gts, frames="all")
    rep = r.report()
    assert rep["declarative"]["m_vIoU"] == 100.0
    assert rep["interrogative"]["m_vIoU"] == 0.0
    assert rep["m_vIoU"] == 50.0


def test_ten_thousand_tubes_vectorised():
    rng = np.random.default_rng(1)
    gts, preds = {}, {}
    for i in range(2000):
        s = int(rng.integers(0, 100))
        gts[str(i)] = gt_of(dense(s, s + 150), segment=(0, 300), fps=25.0)
        preds[str(i)] = dense(s + 10, s + 160)
    r = evaluate(preds, gts)
    assert_allclose(r.tiou, np.full(2000, 140 / 160))


# ----------------------------------------------------------------------------- temporal and REC


def test_temporal_recall_is_inclusive_threshold():
    pred = [(0.0, 10.0), (0.0, 10.0), (0.0, 10.0)]
    gt = [(0.0, 10.0), (0.0, 20.0), (30.0, 40.0)]  # IoU 1, exactly 0.5, 0
    s = evaluate_temporal(pred, gt).summary()
    assert s["R@1,IoU=0.5"] == pytest.approx(200 / 3)
    assert s["R@1,IoU=0.7"] == pytest.approx(100 / 3)
    assert s["mIoU"] == pytest.approx(50.0)


def test_temporal_by_id_hand_values():
    # IoU 1, 1/2 (10/20), 1/3 (10/30), 3/4 (7.5/10), and a query with no prediction (0).
    gt = {"a": (0.0, 10.0), "b": (0.0, 10.0), "c": (10.0, 20.0), "d": (5.0, 15.0), "e": (0.0, 4.0)}
    pred = {"a": (0.0, 10.0), "b": (0.0, 20.0), "c": (0.0, 30.0), "d": (7.5, 15.0), "zzz": (0.0, 1.0)}
    r = evaluate_temporal(pred, gt)
    assert_allclose(r.iou, [1.0, 0.5, 1 / 3, 0.75, 0.0])
    assert r.ids == ["a", "b", "c", "d", "e"] and r.missing == ["e"]
    s = r.report()
    assert s["R@1,IoU=0.3"] == pytest.approx(80.0)  # 1, 1/2, 1/3, 3/4
    assert s["R@1,IoU=0.5"] == pytest.approx(60.0)  # 1, 1/2 (>=), 3/4
    assert s["R@1,IoU=0.7"] == pytest.approx(40.0)  # 1, 3/4
    assert s["mIoU"] == pytest.approx(100 * 31 / 60)  # (1 + 1/2 + 1/3 + 3/4 + 0) / 5
    assert s["n"] == 5 and s["missing"] == 1
    with pytest.raises(TypeError):
        evaluate_temporal([(0.0, 1.0)], gt)


def test_rec_accuracy():
    pred = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 10]], float)
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 20]], float)  # IoU 1, 1/3, 0.5
    assert rec_accuracy(pred, gt) == pytest.approx(200 / 3)

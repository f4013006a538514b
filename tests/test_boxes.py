"""Box conversions: hand-computed values and round trips."""

import numpy as np
import pytest

from zsgrounding.boxes import cxcywh_norm_to_xyxy, xywh_to_xyxy, xyxy_to_cxcywh_norm, xyxy_to_xywh


def test_xywh_to_xyxy_hand_values():
    np.testing.assert_array_equal(xywh_to_xyxy([194, 0, 240, 359]), [194, 0, 434, 359])
    np.testing.assert_array_equal(
        xywh_to_xyxy([[1.5, 2, 3, 4], [0, 0, 0, 0]]), [[1.5, 2, 4.5, 6], [0, 0, 0, 0]]
    )


def test_xyxy_to_xywh_hand_values():
    np.testing.assert_array_equal(xyxy_to_xywh([194, 0, 434, 359]), [194, 0, 240, 359])


def test_cxcywh_norm_hand_values():
    # a 100x50 frame, box x 10..30, y 5..25: centre (20, 15), size (20, 20)
    out = xyxy_to_cxcywh_norm([10, 5, 30, 25], width=100, height=50)
    np.testing.assert_allclose(out, [0.2, 0.3, 0.2, 0.4])
    np.testing.assert_allclose(cxcywh_norm_to_xyxy([0.2, 0.3, 0.2, 0.4], 100, 50), [10, 5, 30, 25])
    np.testing.assert_allclose(cxcywh_norm_to_xyxy([0.5, 0.5, 1, 1], 640, 480), [0, 0, 640, 480])


def test_round_trips_on_batches():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, size=(2, 5, 2))
    wh = rng.uniform(0, 100, size=(2, 5, 2))
    xywh = np.concatenate([xy, wh], axis=-1)
    xyxy = xywh_to_xyxy(xywh)
    assert xyxy.shape == (2, 5, 4)
    np.testing.assert_allclose(xyxy_to_xywh(xyxy), xywh)
    np.testing.assert_allclose(cxcywh_norm_to_xyxy(xyxy_to_cxcywh_norm(xyxy, 640, 360), 640, 360), xyxy)


def test_inputs_are_not_modified_and_output_is_float64():
    boxes = np.array([[1, 2, 3, 4]], dtype=np.int64)
    out = xywh_to_xyxy(boxes)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 4]])


@pytest.mark.parametrize("bad", [[1, 2, 3], 5.0, [[1, 2, 3, 4, 5]]])
def test_wrong_shape_raises(bad):
    with pytest.raises(ValueError, match="shape"):
        xywh_to_xyxy(bad)


def test_non_positive_frame_size_raises():
    with pytest.raises(ValueError):
        xyxy_to_cxcywh_norm([0, 0, 1, 1], 0, 10)

import numpy as np
import pytest

from zsgrounding.proposals.rle import area, counts_to_string, decode, encode, string_to_counts, to_bbox


def _tight_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return np.zeros(4)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def _random_masks(seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 40, size=2))
        density = rng.uniform(0.0, 1.0)
        yield rng.random((h, w)) < density
    # blobby masks: long runs, and counts that need several characters
    for _ in range(10):
        h, w = (int(v) for v in rng.integers(50, 120, size=2))
        mask = np.zeros((h, w), dtype=bool)
        for _ in range(int(rng.integers(1, 4))):
            x1, y1 = int(rng.integers(0, w - 5)), int(rng.integers(0, h - 5))
            mask[y1 : y1 + int(rng.integers(2, 40)), x1 : x1 + int(rng.integers(2, 40))] = True
        yield mask


def test_hand_computed_string_small_mask():
    # column-major: [0, 1, 0 | 1, 1, 0] -> runs 1, 1, 1, 2, 1; 4th and 5th written as 2-1=1, 1-1=0
    mask = np.array([[0, 1], [1, 1], [0, 0]], dtype=bool)
    assert encode(mask) == {"size": [3, 2], "counts": "11110"}
    np.testing.assert_array_equal(decode({"size": [3, 2], "counts": "11110"}), mask)


def test_hand_computed_multi_char_and_negative_deltas():
    # 10 -> ':'; 30 -> 'n0' (bit 0x10 set, so a zero group follows); 5 -> '5'; 10 - 30 = -20 -> '\\O'
    assert counts_to_string([10, 30, 5, 10]) == ":n05\\O"
    # 100 -> 'T3'; 1 - 3 = -2 -> 'N' (one group, sign bit set); 40 - 5 = 35 -> 'S1'
    assert counts_to_string([100, 3, 5, 1, 40]) == "T335NS1"
    assert string_to_counts(":n05\\O") == [10, 30, 5, 10]
    assert string_to_counts(b"T335NS1") == [100, 3, 5, 1, 40]


def test_hand_computed_mask_from_counts():
    mask = decode({"size": [5, 11], "counts": ":n05\\O"})
    flat = mask.ravel(order="F")
    expected = np.repeat([False, True, False, True], [10, 30, 5, 10])
    np.testing.assert_array_equal(flat, expected)
    assert encode(mask)["counts"] == ":n05\\O"
    assert area({"size": [5, 11], "counts": ":n05\\O"}) == 40
    # ones run 10..39 covers columns 2..7 (wrapping), run 45..54 columns 9..10
    np.testing.assert_array_equal(to_bbox({"size": [5, 11], "counts": ":n05\\O"}), [2.0, 0.0, 11.0, 5.0])


def test_empty_full_and_zero_size_masks():
    empty, full = np.zeros((4, 3), dtype=bool), np.ones((4, 3), dtype=bool)
    assert encode(empty) == {"size": [4, 3], "counts": "<"}  # one zero run of 12
    assert encode(full) == {"size": [4, 3], "counts": "0<"}  # empty zero run, then 12 ones
    np.testing.assert_array_equal(decode(encode(empty)), empty)
    np.testing.assert_array_equal(decode(encode(full)), full)
    assert area(encode(empty)) == 0 and area(encode(full)) == 12
    np.testing.assert_array_equal(to_bbox(encode(empty)), [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(to_bbox(encode(full)), [0.0, 0.0, 3.0, 4.0])
    assert encode(np.zeros((0, 5), dtype=bool)) == {"size": [0, 5], "counts": "0"}
    assert decode({"size": [0, 5], "counts": "0"}).shape == (0, 5)


def test_round_trip_random_masks():
    for mask in _random_masks():
        rle = encode(mask)
        assert rle["size"] == list(mask.shape)
        assert isinstance(rle["counts"], str)
        out = decode(rle)
        assert out.dtype == bool
        np.testing.assert_array_equal(out, mask)
        assert area(rle) == int(mask.sum())
        np.testing.assert_array_equal(to_bbox(rle), _tight_box(mask))


def test_uncompressed_counts():
    mask = np.array([[0, 1], [1, 1], [0, 0]], dtype=bool)
    rle = {"size": [3, 2], "counts": [1, 1, 1, 2, 1]}
    np.testing.assert_array_equal(decode(rle), mask)
    assert area(rle) == 3
    np.testing.assert_array_equal(to_bbox(rle), [0.0, 0.0, 2.0, 2.0])


def test_box_of_single_pixels():
    mask = np.zeros((6, 7), dtype=bool)
    mask[1, 2] = mask[3, 4] = True
    np.testing.assert_array_equal(to_bbox(encode(mask)), [2.0, 1.0, 5.0, 4.0])


def test_malformed_rle_raises():
    with pytest.raises(ValueError, match="sum to 11"):
        decode({"size": [3, 4], "counts": [5, 6]})
    with pytest.raises(ValueError, match="ends inside a count"):
        decode({"size": [3, 4], "counts": "T"})
    with pytest.raises(ValueError, match="outside"):
        decode({"size": [3, 4], "counts": "<~"})
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        decode({"counts": "<"})
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        encode(np.zeros((2, 3, 4), dtype=bool))


def test_byte_identical_to_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    for mask in [*_random_masks(1), np.zeros((4, 3), dtype=bool), np.ones((4, 3), dtype=bool)]:
        theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        ours = encode(mask)
        assert ours["counts"].encode("ascii") == theirs["counts"]
        assert ours["size"] == [int(v) for v in theirs["size"]]
        np.testing.assert_array_equal(decode(theirs), mask)

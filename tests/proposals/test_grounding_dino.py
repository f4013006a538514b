"""Grounding DINO detector on a tiny random-weight checkpoint saved and loaded offline.

Random weights give meaningless boxes, so the model-driven tests check the plumbing (native
coordinates, thresholds, batching, phrase tokens) and the post-processing is checked on
hand-made logits with known answers. The checkpoint builder lives in ``tests/tiny_proposals.py``.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_proposals import (
    DETECTOR_MEAN,
    DETECTOR_STD,
    MAX_TEXT_LEN,
    NUM_QUERIES,
    make_bert_like_tokenizer,
    save_tiny_detector,
)
from transformers import GroundingDinoImageProcessorPil
from transformers.image_transforms import center_to_corners_format

from zsgrounding.mllm.errors import ModelError
from zsgrounding.proposals.grounding_dino import (
    DetectorConfig,
    DetectorPreprocessing,
    GroundingDinoDetector,
    decode_detections,
    prompt_text,
)


def random_frames(num: int = 3, height: int = 48, width: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(num, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_detector(tmp_path_factory.mktemp("gdino"))


@pytest.fixture(scope="module")
def detector(checkpoint) -> GroundingDinoDetector:
    return GroundingDinoDetector.from_pretrained(
        checkpoint, DetectorConfig(box_threshold=0.0, text_threshold=0.0)
    )


def with_config(detector: GroundingDinoDetector, **settings) -> GroundingDinoDetector:
    return GroundingDinoDetector.from_model(
        detector.model, detector.tokenizer, DetectorConfig(**settings), detector.preprocessing
    )


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("The Man in red", "the man in red."),
        ("  a   DOG. ", "a dog."),
        ("person\n", "person."),
        ("a car..", "a car."),
    ],
)
def test_prompt_text(phrase, expected):
    assert prompt_text(phrase) == expected


def test_prompt_text_rejects_empty_phrase():
    with pytest.raises(ValueError, match="empty noun phrase"):
        prompt_text(" . ")


def test_preprocessing_read_from_checkpoint(checkpoint, detector):
    prep = detector.preprocessing
    assert (prep.shortest_edge, prep.longest_edge) == (64, 96)
    assert prep.normalisation.image_mean == tuple(DETECTOR_MEAN)
    assert prep.normalisation.image_std == tuple(DETECTOR_STD)
    assert prep.normalisation.source == checkpoint / "preprocessor_config.json"
    # 48 x 80: short side 64 would make the long side 106.7 > 96, so the long side is capped
    assert prep.resized_size(48, 80) == (58, 96)
    assert prep.resized_size(80, 48) == (96, 58)
    assert prep.resized_size(40, 40) == (64, 64)
    pixels = prep(random_frames(2))
    assert pixels.shape == (2, 3, 58, 96)
    # a uniform grey frame normalises to (v / 255 - mean) / std per channel
    grey = np.full((1, 48, 80, 3), 51, dtype=np.uint8)
    expected = (0.2 - torch.tensor(DETECTOR_MEAN)) / torch.tensor(DETECTOR_STD)
    torch.testing.assert_close(prep(grey)[0, :, 10, 10], expected)


@pytest.mark.parametrize(("height", "width"), [(48, 80), (80, 48), (30, 30)])
def test_preprocessing_matches_transformers_pil_processor(checkpoint, detector, height, width):
    # the PIL image processor needs no torchvision; ours batches same-size frames without padding
    settings = json.loads((checkpoint / "preprocessor_config.json").read_text(encoding="utf-8"))
    settings.pop("image_processor_type")
    reference = GroundingDinoImageProcessorPil(**settings)
    frames = random_frames(2, height, width, seed=5)
    expected = reference(images=list(frames), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(detector.preprocessing(frames), expected)


def test_a_4_by_3_frame_is_resized_as_the_processor_does(detector):
    # 480 x 640 at the default 800 / 1333: the long side is 1066.67, truncated to 1066 (rounding
    # would give 1067); the cap case truncates too (400 x 1000 -> 533.2 x 1333)
    prep = DetectorPreprocessing.from_dict({})
    assert prep.resized_size(480, 640) == (800, 1066)
    assert prep.resized_size(640, 480) == (1066, 800)
    assert prep.resized_size(400, 1000) == (533, 1333)
    assert prep.resized_size(800, 1000) == (800, 1000)
    settings = {"image_mean": DETECTOR_MEAN, "image_std": DETECTOR_STD}
    reference = GroundingDinoImageProcessorPil(**settings)
    ours = DetectorPreprocessing.from_dict(settings)
    frames = random_frames(1, 480, 640, seed=7)
    expected = reference(images=list(frames), return_tensors="pt")["pixel_values"]
    assert expected.shape == (1, 3, 800, 1066)
    torch.testing.assert_close(ours(frames), expected)


def test_image_size_overrides_short_side_and_scales_the_cap(detector):
    resized = with_config(detector, image_size=32).preprocessing
    assert (resized.shortest_edge, resized.longest_edge) == (32, 48)
    assert resized.resized_size(48, 80) == (29, 48)
    assert resized.normalisation == detector.preprocessing.normalisation


def test_defaults_without_preprocessor_file():
    prep = DetectorPreprocessing.from_dict({})
    assert (prep.shortest_edge, prep.longest_edge) == (800, 1333)
    assert prep.normalisation.image_mean == (0.485, 0.456, 0.406)
    legacy = DetectorPreprocessing.from_dict({"size": 600, "max_size": 1000})
    assert (legacy.shortest_edge, legacy.longest_edge) == (600, 1000)
    with pytest.raises(ModelError, match="unsupported size"):
        DetectorPreprocessing.from_dict({"size": {"height": 10, "width": 10}})


def test_decode_detections_by_hand():
    tokenizer = make_bert_like_tokenizer()
    ids = tokenizer("the man in red.")["input_ids"]
    assert ids == [101, 1030, 1031, 1032, 1033, 1012, 102]
    phrase_ids = {1030, 1031, 1032, 1033}
    # query 0: best prob at "." (3.0 -> 0.953); words above 0.5: "man", "red" (the dot is no word)
    # query 1: best prob 0.269 < 0.5, dropped; query 2: 0.731 > 0.5, kept with "the" only
    logits = torch.full((3, MAX_TEXT_LEN), float("-inf"))
    logits[:, :7] = torch.tensor(
        [
            [-9.0, -2.0, 2.0, -1.0, 1.0, 3.0, -9.0],
            [-9.0, -1.0, -1.0, -1.0, -1.0, -1.0, -9.0],
            [-9.0, 1.0, -3.0, -3.0, -3.0, -3.0, -9.0],
        ]
    )
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1], [0.9, 0.2, 0.4, 0.2]])
    config = DetectorConfig(box_threshold=0.5, text_threshold=0.5)
    det = decode_detections(logits, boxes, ids, phrase_ids, tokenizer, 7, 80, 48, config)
    assert det.frame_id == 7
    assert det.labels == ["man red", "the"]
    np.testing.assert_allclose(det.scores, torch.sigmoid(torch.tensor([3.0, 1.0])).numpy(), rtol=1e-6)
    # (0.5, 0.5, 0.5, 0.5) in 80 x 48 -> [20, 12, 60, 36]; the second reaches past x = 80 and is clipped
    np.testing.assert_allclose(det.boxes, [[20.0, 12.0, 60.0, 36.0], [56.0, 4.8, 80.0, 14.4]], rtol=1e-6)


def test_detect_keeps_every_query_at_zero_thresholds(detector):
    frames = random_frames(3)
    dets = detector.detect(frames, [4, 9, 14], "The Man in red")
    assert [d.frame_id for d in dets] == [4, 9, 14]
    for det in dets:
        assert len(det) == NUM_QUERIES
        assert det.boxes.dtype == np.float64
        assert (
            np.all(det.boxes >= 0)
            and np.all(det.boxes[:, [0, 2]] <= 80)
            and np.all(det.boxes[:, [1, 3]] <= 48)
        )
        assert np.all(det.boxes[:, 2:] >= det.boxes[:, :2])
        assert np.all(np.diff(det.scores) <= 0)  # best first
        # text threshold 0: every prompt word (not [CLS], [SEP] or ".") is in the phrase, in order
        assert set(det.labels) == {"the man in red"}


def test_detect_matches_the_model_outputs(detector):
    frames = random_frames(2, seed=1)
    dets = detector.detect(frames, [0, 1], "a dog", size=(96, 160))
    encoded = detector.tokenizer(["a dog."] * 2, return_tensors="pt")
    with torch.no_grad():
        out = detector.model(pixel_values=detector.preprocessing(frames), **encoded)
    length = encoded["input_ids"].shape[1]
    for i, det in enumerate(dets):
        scores = torch.sigmoid(out.logits[i, :, :length]).amax(-1)
        order = torch.argsort(scores, descending=True)
        expected = center_to_corners_format(out.pred_boxes[i, order]) * torch.tensor(
            [160.0, 96.0, 160.0, 96.0]
        )
        expected = expected.clamp(min=0).minimum(torch.tensor([160.0, 96.0, 160.0, 96.0]))
        torch.testing.assert_close(torch.from_numpy(det.boxes).float(), expected)
        torch.testing.assert_close(torch.from_numpy(det.scores).float(), scores[order])


def test_batching_does_not_change_results(detector):
    frames = random_frames(5, seed=2)
    one = with_config(detector, box_threshold=0.0, text_threshold=0.0, batch_size=1).detect(
        frames, range(5), "car"
    )
    many = with_config(detector, box_threshold=0.0, text_threshold=0.0, batch_size=3).detect(
        frames, range(5), "car"
    )
    for a, b in zip(one, many, strict=True):
        torch.testing.assert_close(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            torch.from_numpy(a.scores), torch.from_numpy(b.scores), atol=1e-5, rtol=1e-5
        )


def test_thresholds_are_respected(detector):
    frames = random_frames(2, seed=3)
    everything = with_config(detector, box_threshold=0.0, text_threshold=1.0).detect(
        frames, [0, 1], "the dog"
    )
    assert all(len(d) == NUM_QUERIES for d in everything)
    assert all(label == "" for d in everything for label in d.labels)  # no token is above 1.0
    nothing = with_config(detector, box_threshold=1.0).detect(frames, [0, 1], "the dog")
    assert [len(d) for d in nothing] == [0, 0]
    assert nothing[0].boxes.shape == (0, 4)
    # a middle threshold keeps exactly the queries scoring above it
    all_scores = np.concatenate([d.scores for d in everything])
    cut = float(np.median(all_scores))
    some = with_config(detector, box_threshold=cut).detect(frames, [0, 1], "the dog")
    assert sum(len(d) for d in some) == int((all_scores > cut).sum())
    assert all(np.all(d.scores > cut) for d in some)


def test_detect_validates_inputs(detector):
    assert detector.detect(np.zeros((0, 8, 8, 3), dtype=np.uint8), [], "dog") == []
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((1, 8, 8, 3), dtype=np.float32), [0], "dog")
    with pytest.raises(ValueError, match="frame ids"):
        detector.detect(random_frames(2), [0], "dog")


def test_missing_checkpoint_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load the detector"):
        GroundingDinoDetector.from_pretrained(tmp_path / "nowhere", local_files_only=True)

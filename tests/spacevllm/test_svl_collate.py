"""Records + clips -> padded batches: answer labels, box targets and masks, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spacevllm.collate import SimpleRecord, SpaceVLLMCollator, box_at, load_clip
from zsgrounding.toy.world import generate_one, make_dataset
from zsgrounding.types import Clip

CAPTION = "the red circle moving left"
BOX = [10.0, 10.0, 40.0, 30.0]  # in an 80 x 60 frame: cx 25/80, cy 20/60, w 30/80, h 20/60
BOX_NORM = [25 / 80, 20 / 60, 30 / 80, 20 / 60]


def _record(task: str = "stvg", **kw: object) -> SimpleRecord:
    settings: dict[str, object] = {"width": 80, "height": 60, "fps": 10.0, "num_frames": 40}
    settings.update(kw)
    return SimpleRecord(task=task, id=f"{task}-1", media="", query=CAPTION, **settings)  # type: ignore[arg-type]


def _image_clip(make_clip) -> Clip:
    clip = make_clip(num_frames=1)
    clip.frame_ids, clip.times = np.array([0]), np.array([0.0])
    return clip


def test_labels_cover_the_answer_and_stop_token_only(make_model, make_clip) -> None:
    # Frames at 0.5, 1.5, 2.5, 3.5 s; the span [1.0, 3.0) snaps to 1.50 .. 2.50.
    model = make_model()
    boxes = {f: BOX for f in range(10, 30)}
    batch = model.collator()([(_record(span=(1.0, 3.0), boxes=boxes), make_clip())])
    assert batch.answers == ["From 1.50 to 2.50 seconds."]
    labels = batch.labels[0]
    labelled = torch.nonzero(labels != -100).flatten()
    start = int(batch.prompt_lengths[0])
    torch.testing.assert_close(labelled, torch.arange(start, batch.input_ids.shape[1]))
    torch.testing.assert_close(labels[labelled], batch.input_ids[0, labelled])
    assert model.tokenizer.decode(labels[labelled]) == "From 1.50 to 2.50 seconds.<|im_end|>"
    assert int(labels[labelled[-1]]) == model.adapter.stop_id
    prompt = model.tokenizer.decode(batch.input_ids[0, :start])
    # LLaVA-Video's time instruction, then the question on its own line (the tiny tokenizer knows
    # few words: its [UNK]s stand for the others)
    assert "4.00 seconds, and 4 frames are" in prompt
    assert "at 0.50s,1.50s,2.50s,3.50s." in prompt
    assert ' to this video.\nDuring which time does the event in the sentence "the red circle' in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_box_targets_inside_the_span(make_model, make_clip) -> None:
    model = make_model()
    boxes = {f: BOX for f in range(10, 30)}  # the GT tube covers native frames 10 .. 29
    batch = model.collator()([(_record(span=(1.0, 3.0), boxes=boxes), make_clip())])
    assert batch.box_mask.tolist() == [[False, True, True, False]]
    torch.testing.assert_close(batch.target_boxes[0, 1], torch.tensor(BOX_NORM))
    torch.testing.assert_close(batch.target_boxes[0, 2], torch.tensor(BOX_NORM))
    assert batch.frame_ids.tolist() == [[5, 15, 25, 35]]
    torch.testing.assert_close(batch.frame_times, torch.tensor([[0.5, 1.5, 2.5, 3.5]], dtype=torch.float64))


def test_sparse_boxes_are_interpolated_and_clipped() -> None:
    boxes = {10: [0.0, 0.0, 20.0, 20.0], 30: [40.0, 20.0, 60.0, 40.0]}
    torch.testing.assert_close(
        torch.tensor(box_at(boxes, 15)), torch.tensor([10.0, 5.0, 30.0, 25.0]).double()
    )
    assert box_at(boxes, 5) is None and box_at(boxes, 31) is None and box_at({}, 3) is None
    assert box_at({"7": [1, 2, 3, 4]}, 7).tolist() == [1, 2, 3, 4]


def test_box_outside_the_frame_is_clipped_or_dropped(make_model, make_clip) -> None:
    model = make_model()
    boxes = {15: [-20.0, -10.0, 40.0, 30.0], 25: [90.0, 0.0, 120.0, 10.0]}
    batch = model.collator()([(_record(span=(1.0, 3.0), boxes=boxes), make_clip())])
    assert batch.box_mask.tolist() == [[False, True, False, False]]  # frame 25's box is off-frame
    torch.testing.assert_close(batch.target_boxes[0, 1], torch.tensor([20 / 80, 15 / 60, 40 / 80, 30 / 60]))


def test_vtg_has_an_answer_but_no_boxes_and_rec_the_reverse(make_model, make_clip) -> None:
    model = make_model()
    collate = model.collator()
    vtg = collate([(_record("vtg", span=(0.0, 1.0), boxes={5: BOX}), make_clip())])
    assert vtg.answers == ["From 0.50 to 0.50 seconds."]
    assert not bool(vtg.box_mask.any())
    rec = collate([(_record("rec", boxes={0: BOX}, fps=None, num_frames=None), _image_clip(make_clip))])
    assert rec.answers == [None]
    assert bool((rec.labels == -100).all())
    assert rec.box_mask.tolist() == [[True]]
    torch.testing.assert_close(rec.target_boxes[0, 0], torch.tensor(BOX_NORM))
    assert "image" in model.tokenizer.decode(rec.input_ids[0])


def test_padding_of_a_mixed_batch(make_model, make_clip) -> None:
    model = make_model()
    items = [
        (_record(span=(1.0, 3.0), boxes={f: BOX for f in range(10, 30)}), make_clip()),
        (_record("rec", boxes={0: BOX}), _image_clip(make_clip)),
    ]
    collate = model.collator()
    batch = collate(items)
    single = [collate([item]) for item in items]
    assert batch.batch_size == 2
    assert batch.pixel_values.shape == (2, 4, 3, 64, 64)
    assert batch.frame_mask.tolist() == [[True] * 4, [True, False, False, False]]
    assert batch.num_frames.tolist() == [4, 1]
    assert batch.tasks == ["stvg", "rec"]
    for row, one in enumerate(single):
        n = one.input_ids.shape[1]
        torch.testing.assert_close(batch.input_ids[row, :n], one.input_ids[0])
        torch.testing.assert_close(batch.labels[row, :n], one.labels[0])
        assert int(batch.attention_mask[row].sum()) == n
        assert bool((batch.input_ids[row, n:] == model.tokenizer.pad_token_id).all())
        assert bool((batch.labels[row, n:] == -100).all())
        t = int(one.num_frames[0])
        torch.testing.assert_close(batch.pixel_values[row, :t], one.pixel_values[0])
        torch.testing.assert_close(batch.query_positions[row, :t], one.query_positions[0])
        c = one.caption_positions.shape[1]
        torch.testing.assert_close(batch.caption_positions[row, :c], one.caption_positions[0])
    assert bool((batch.pixel_values[1, 1:] == 0).all())
    assert batch.frame_ids[1].tolist() == [0, -1, -1, -1]
    moved = batch.to("cpu")
    assert moved.tasks == batch.tasks and torch.equal(moved.input_ids, batch.input_ids)


def test_inference_prompts_have_no_answer(make_model, make_clip) -> None:
    model = make_model()
    batch = model.collator(with_answers=False)([(_record(span=(1.0, 3.0)), make_clip())])
    assert int(batch.prompt_lengths[0]) == batch.input_ids.shape[1]
    assert bool((batch.labels == -100).all())


def test_bad_items_are_refused(make_model, make_clip) -> None:
    collate = make_model().collator()
    with pytest.raises(ValueError, match="unknown task"):
        collate([(_record("vqa"), make_clip())])
    with pytest.raises(ValueError, match="one frame"):
        collate([(_record("rec", boxes={0: BOX}), make_clip())])
    with pytest.raises(ValueError, match="query tokens"):
        collate([(_record(span=(0.0, 1.0)), make_clip(num_frames=5))])


def test_bare_records_are_loaded_by_the_collator(make_model, tmp_path) -> None:
    make_dataset(tmp_path / "toy", 1, progress=False)
    video = generate_one(0)
    stvg = SimpleRecord(
        "stvg", "v", tmp_path / "toy" / "videos" / video.key, video.caption, video.width, video.height,
        video.fps, video.num_frames, (1.0, 3.0), video.tube.box_dict(),
    )  # fmt: skip
    pixels = np.zeros((30, 50, 3), dtype=np.uint8)
    pixels[5:15, 10:30] = 255
    Image.fromarray(pixels).save(tmp_path / "img.png")
    rec = SimpleRecord("rec", "i", tmp_path / "img.png", "the white box", 50, 30, boxes={0: [10, 5, 30, 15]})
    clip = load_clip(rec, 4)
    assert clip.frames.shape == (1, 30, 50, 3) and clip.frame_ids.tolist() == [0]
    assert (clip.width, clip.height) == (50, 30)
    batch = make_model().collator()([stvg, rec])
    assert batch.num_frames.tolist() == [4, 1]
    assert batch.frame_ids[0].tolist() == [6, 20, 33, 47]  # uniform samples of 54 frames
    assert batch.box_mask.tolist() == [[False, True, False, False], [True, False, False, False]]
    torch.testing.assert_close(batch.target_boxes[1, 0], torch.tensor([0.4, 1 / 3, 0.4, 1 / 3]))
    with pytest.raises(ValueError, match="num_frames"):
        SpaceVLLMCollator(make_model().adapter)([rec])

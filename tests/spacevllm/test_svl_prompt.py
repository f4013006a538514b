"""Time instruction, span snapping, answers and the tolerant span parser."""

from __future__ import annotations

import pytest

from spacevllm.prompt import (
    IMAGE_INSTRUCTION,
    TIME_INSTRUCTION,
    answer_text,
    build_instruction,
    frames_in_span,
    parse_span,
    snap_span,
)

TIMES = [0.5, 1.5, 2.5, 3.5]


@pytest.mark.parametrize(
    ("text", "start", "end", "problem"),
    [
        ("From 2.4 to 5.1 seconds.", 2.4, 5.1, None),
        ("from 2.4s to 5.1s", 2.4, 5.1, None),
        ("2.4 - 5.1", 2.4, 5.1, None),
        ("2.4-5.1", 2.4, 5.1, None),
        ("The event happens from 5.1 to 2.4 seconds", 2.4, 5.1, "reversed"),
        ("From 3 to 99 seconds.", 3.0, 10.0, "clipped to the video"),
        ("from -1 to 3", 0.0, 3.0, "clipped to the video"),
        ("00:02.5 to 00:05", 2.5, 5.0, None),
        ("Between 1.5 and 2 seconds, 3 people", 1.5, 2.0, "1 extra number(s) ignored"),
        ("q3 and t0: from 1 to 2", 1.0, 2.0, None),
        ("well... .5 to 1.", 0.5, 1.0, None),
        ("From 9 to 4 seconds and more 12", 4.0, 9.0, "1 extra number(s) ignored; reversed"),
    ],
)
def test_parse_span_reads_messy_answers(text: str, start: float, end: float, problem: str | None) -> None:
    parsed = parse_span(text, duration=10.0)
    assert parsed.ok
    assert parsed.start == pytest.approx(start)
    assert parsed.end == pytest.approx(end)
    assert parsed.problem == problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("I do not know.", "no time in the answer"),
        ("It starts at 4 seconds", "only one time in the answer"),
        ("", "no time in the answer"),
        ("From 20 to 30 seconds.", "span outside the video"),
    ],
)
def test_parse_span_failures_give_the_whole_video(text: str, problem: str) -> None:
    parsed = parse_span(text, duration=10.0)
    assert not parsed.ok
    assert (parsed.start, parsed.end) == (0.0, 10.0)
    assert parsed.problem == problem


def test_parse_span_needs_a_duration() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_span("From 1 to 2", duration=0.0)


def test_answer_round_trips_through_the_parser() -> None:
    text = answer_text(1.5, 2.25, decimals=2)
    assert text == "From 1.50 to 2.25 seconds."
    parsed = parse_span(text, duration=4.0)
    assert (parsed.start, parsed.end, parsed.ok, parsed.problem) == (1.5, 2.25, True, None)


def test_snap_span_to_sampled_frames() -> None:
    snapped = snap_span((1.0, 3.0), TIMES)
    assert (snapped.start, snapped.end, snapped.first, snapped.last, snapped.inside) == (1.5, 2.5, 1, 2, True)
    # Half-open: a frame exactly at the end is outside.
    snapped = snap_span((1.5, 2.5), TIMES)
    assert (snapped.start, snapped.end, snapped.first, snapped.last) == (1.5, 1.5, 1, 1)
    # No sampled frame inside: the nearest one to the centre (3.75 -> 3.5) stands for it.
    snapped = snap_span((3.6, 3.9), TIMES)
    assert (snapped.start, snapped.first, snapped.last, snapped.inside) == (3.5, 3, 3, False)


def test_frames_in_span_tolerates_printed_rounding() -> None:
    assert frames_in_span(TIMES, 1.5, 2.5) == (1, 2)
    thirds = [1 / 3, 2 / 3, 1.0]
    assert frames_in_span(thirds, 0.33, 0.67, decimals=2) == (0, 1)
    assert frames_in_span(thirds, 0.334, 0.67, decimals=2) == (0, 1)  # 1/3 is within 0.005 of 0.334
    assert frames_in_span(thirds, 0.334, 0.67, decimals=3) == (1, 1)  # but not within 0.0005
    assert frames_in_span(TIMES, 3.8, 3.9) == (3, 3)  # none inside: nearest to the centre


def test_time_instruction_is_llava_videos_own_sentence() -> None:
    """LLaVA-Video's training sentence, character for character, then the question on its own line."""
    caption = "the red circle moving left"
    inst = build_instruction("stvg", f"  {caption} ", duration=20.0, times=[0.0, 0.28, 19.96], decimals=2)
    assert inst.text == (
        "The video lasts for 20.00 seconds, and 3 frames are uniformly sampled from it. These frames "
        "are located at 0.00s,0.28s,19.96s.Please answer the following questions related to this video.\n"
        'During which time does the event in the sentence "the red circle moving left" happen? '
        "Answer with its start and end in seconds."
    )
    assert inst.caption == caption
    assert inst.text == TIME_INSTRUCTION.format(
        duration="20.00", num_frames=3, times="0.00s,0.28s,19.96s", sentence=caption
    )
    # A caption that repeats the instruction's own words is still found at the right place.
    tricky = build_instruction("vtg", "frames are located at", duration=4.0, times=TIMES)
    assert tricky.caption == "frames are located at"
    assert tricky.caption_start > tricky.text.index("frames are located at")


def test_the_earlier_paraphrase_stays_as_toolkit_v1() -> None:
    caption = "the red circle moving left"
    inst = build_instruction("stvg", caption, duration=4.0, times=TIMES, time_style="toolkit-v1")
    assert inst.text == (
        "This video is 4.00 seconds long, and 4 frames were taken from it at equal intervals, at "
        '0.50s, 1.50s, 2.50s, 3.50s. During which time does the event in the sentence "the red circle '
        'moving left" happen? Answer with its start and end in seconds.'
    )
    assert inst.caption == caption
    with pytest.raises(ValueError, match="unknown time style"):
        build_instruction("stvg", caption, duration=4.0, times=TIMES, time_style="paraphrase")


def test_image_instruction_and_unknown_task() -> None:
    inst = build_instruction("rec", "the cat")
    assert inst.text == IMAGE_INSTRUCTION.format(sentence="the cat")
    assert inst.caption == "the cat"
    with pytest.raises(ValueError, match="unknown task"):
        build_instruction("vqa", "the cat")
    with pytest.raises(ValueError, match="empty"):
        build_instruction("rec", "  ")


def test_the_time_instruction_of_a_config_and_of_checkpoints_saved_before_it(tmp_path) -> None:
    import json

    from spacevllm.config import CONFIG_NAME, SpaceVLLMConfig

    assert SpaceVLLMConfig().time_instruction == "llava-video"
    saved = SpaceVLLMConfig(time_instruction="llava-video").save(tmp_path / "new")
    assert SpaceVLLMConfig.load(saved.parent).time_instruction == "llava-video"
    # A config written before the field existed was trained with the paraphrase, and keeps it.
    old = json.loads(saved.read_text())
    del old["time_instruction"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / CONFIG_NAME).write_text(json.dumps(old))
    assert SpaceVLLMConfig.load(tmp_path / "old").time_instruction == "toolkit-v1"
    with pytest.raises(ValueError, match="time_instruction must be"):
        SpaceVLLMConfig(time_instruction="ours")


def test_the_shipped_toy_spacevllm_is_the_papers_configuration() -> None:
    from spacevllm.config import SpaceVLLMConfig
    from zsgrounding.assets import TOY_SPACEVLLM

    shipped = SpaceVLLMConfig.load(TOY_SPACEVLLM)
    paper = SpaceVLLMConfig(base_model=shipped.base_model, num_frames=shipped.num_frames)
    assert shipped == paper  # every other field at its default: LLaVA-Video's instruction, no option of ours
    assert shipped.time_instruction == "llava-video" and shipped.interleave and shipped.dual_cross_attention
    assert not (shipped.caption_first or shipped.position_cue or shipped.position_codes)

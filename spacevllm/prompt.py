"""Task instructions, time answers and their tolerant parser.

Time instruction (*SpaceVLLM*, arXiv 2503.13983, sec. 3.1.2): the prompt states the video's length and the time of
every sampled frame, so the language model can answer in seconds that refer to frames it saw.
The paper quotes LLaVA-Video's own time instruction, the sentence a LLaVA-Video base was trained
with; :data:`LLAVA_VIDEO_TIME_INSTRUCTION` reproduces it character for character (time style
``"llava-video"``, the default). ``"toolkit-v1"`` is the paraphrase this toolkit used before;
checkpoints saved with it keep it (see :attr:`SpaceVLLMConfig.time_instruction
<spacevllm.config.SpaceVLLMConfig.time_instruction>`).
The GT boundaries are snapped to sampled frame times (:func:`snap_span`): the answer names the
first and the last sampled frame inside the span, so a perfect answer is always expressible.

At inference :func:`parse_span` reads the generated text back to seconds and
:func:`frames_in_span` turns it into the sampled frames the decoder's boxes are taken from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# LLaVA-Video's time instruction, verbatim from the LLaVA-NeXT training code (its
# `add_time_instruction` branch; also its inference examples): the duration and every frame time
# with 2 decimals, the times joined by "," with an "s" each, and no space before "Please". The
# human turn is then "<video>\n{time instruction}\n{question}".
LLAVA_VIDEO_TIME_INSTRUCTION = (
    "The video lasts for {duration} seconds, and {num_frames} frames are uniformly sampled from it. "
    "These frames are located at {times}.Please answer the following questions related to this video."
)
# The grounding question after it (ours: the paper does not give its wording).
TIME_QUESTION = (
    'During which time does the event in the sentence "{sentence}" happen? '
    "Answer with its start and end in seconds."
)
# The time instruction this toolkit used before (time style "toolkit-v1"), our paraphrase.
TOOLKIT_V1_TIME_INSTRUCTION = (
    "This video is {duration} seconds long, and {num_frames} frames were taken from it at equal "
    'intervals, at {times}. During which time does the event in the sentence "{sentence}" happen? '
    "Answer with its start and end in seconds."
)
TIME_INSTRUCTION = LLAVA_VIDEO_TIME_INSTRUCTION + "\n" + TIME_QUESTION
# Referring expression comprehension: an image is a one-frame video followed by the image query;
# the box comes from the decoder, so the instruction asks for nothing in text.
IMAGE_INSTRUCTION = 'Locate the object that the sentence "{sentence}" describes in this image.'
# time style -> (task -> template, separator of the frame times)
TIME_STYLES: dict[str, tuple[dict[str, str], str]] = {
    "llava-video": ({"stvg": TIME_INSTRUCTION, "vtg": TIME_INSTRUCTION, "rec": IMAGE_INSTRUCTION}, ","),
    "toolkit-v1": (
        {"stvg": TOOLKIT_V1_TIME_INSTRUCTION, "vtg": TOOLKIT_V1_TIME_INSTRUCTION, "rec": IMAGE_INSTRUCTION},
        ", ",
    ),
}
TASK_INSTRUCTIONS = TIME_STYLES["llava-video"][0]
VIDEO_TASKS = ("stvg", "vtg")

ANSWER_TEMPLATE = "From {start} to {end} seconds."

# A time: optional minus (only when it starts a word: the "-" of "2.4-5.1" is a dash), then
# seconds, "m:ss" or "h:mm:ss", optional decimals. Numbers glued after letters (t0, q3) are not times.
_TIME = re.compile(r"(?:(?<![\w.])(-))?(?<![\w.])(\d+(?::\d+){0,2}(?:\.\d+)?|\.\d+)")


def format_seconds(seconds: float, decimals: int) -> str:
    """``2.4`` -> ``"2.40"`` with 2 decimals."""
    return f"{float(seconds):.{int(decimals)}f}"


@dataclass(frozen=True)
class Instruction:
    """An instruction text and where its sentence (the caption) lies in it.

    Attributes:
        text: the instruction.
        caption_start, caption_end: character span of the caption in ``text``.
    """

    text: str
    caption_start: int
    caption_end: int

    @property
    def caption(self) -> str:
        return self.text[self.caption_start : self.caption_end]


def build_instruction(
    task: str,
    sentence: str,
    duration: float = 0.0,
    times: Sequence[float] | np.ndarray = (),
    decimals: int = 2,
    templates: dict[str, str] | None = None,
    time_style: str = "llava-video",
) -> Instruction:
    """The instruction of ``task`` (``"stvg"``, ``"vtg"`` or ``"rec"``) for ``sentence``.

    Args:
        duration: video length in seconds (video tasks).
        times: ``(T,)`` seconds of the sampled frames (video tasks).
        decimals: decimals of the seconds.
        templates: task -> template with ``{sentence}`` (and for video tasks ``{duration}``,
            ``{num_frames}``, ``{times}``); default: the ``time_style``'s.
        time_style: a key of :data:`TIME_STYLES`: ``"llava-video"`` (LLaVA-Video's exact time
            instruction, then the question) or ``"toolkit-v1"`` (the earlier paraphrase).
    """
    if time_style not in TIME_STYLES:
        raise ValueError(f"unknown time style {time_style!r}: expected one of {sorted(TIME_STYLES)}")
    styled, separator = TIME_STYLES[time_style]
    table = styled if templates is None else templates
    if task not in table:
        raise ValueError(f"unknown task {task!r}: expected one of {sorted(table)}")
    sentence = sentence.strip()
    if not sentence:
        raise ValueError("empty sentence")
    template = table[task]
    fields = {
        "duration": format_seconds(duration, decimals),
        "num_frames": len(times),
        "times": separator.join(f"{format_seconds(t, decimals)}s" for t in times),
    }
    # The text before {sentence} does not depend on the sentence: format it once with an empty
    # sentence cut at a marker to learn where the caption starts.
    marker = "\x00"
    head = template.format(sentence=marker, **fields)
    start = head.index(marker)
    text = template.format(sentence=sentence, **fields)
    return Instruction(text=text, caption_start=start, caption_end=start + len(sentence))


@dataclass(frozen=True)
class SnappedSpan:
    """A GT span snapped to sampled frames.

    Attributes:
        start, end: seconds of the first and last sampled frame inside the span (both inclusive).
        first, last: their sampled-frame indices.
        inside: whether any sampled frame lies inside the span; when none does, the nearest
            frame to the span's centre stands for it (``first == last``).
    """

    start: float
    end: float
    first: int
    last: int
    inside: bool


def snap_span(span: tuple[float, float], times: Sequence[float] | np.ndarray) -> SnappedSpan:
    """Snap the half-open span ``[start, end)`` in seconds to the sampled frame ``times``."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if t.size == 0:
        raise ValueError("no sampled frames to snap to")
    lo, hi = float(span[0]), float(span[1])
    idx = np.flatnonzero((t >= lo) & (t < hi))
    if idx.size:
        first, last = int(idx[0]), int(idx[-1])
        return SnappedSpan(float(t[first]), float(t[last]), first, last, True)
    nearest = int(np.argmin(np.abs(t - (lo + hi) / 2)))
    return SnappedSpan(float(t[nearest]), float(t[nearest]), nearest, nearest, False)


def answer_text(start: float, end: float, decimals: int = 2, template: str = ANSWER_TEMPLATE) -> str:
    """``"From 2.40 to 5.10 seconds."``"""
    return template.format(start=format_seconds(start, decimals), end=format_seconds(end, decimals))


@dataclass(frozen=True)
class ParsedSpan:
    """A span read from generated text.

    Attributes:
        start, end: seconds, ``0 <= start <= end <= duration``; the whole video when not ``ok``.
        ok: whether a span was read.
        problem: what was wrong or repaired (``"reversed"``, ``"clipped to the video"``, ...),
            several joined by ``"; "``; ``None`` for a clean answer.
    """

    start: float
    end: float
    ok: bool
    problem: str | None = None


def _seconds(token: str) -> float:
    value = 0.0
    for part in token.split(":"):
        value = value * 60.0 + float(part)
    return value


def parse_span(text: str, duration: float) -> ParsedSpan:
    """Read ``start`` and ``end`` seconds from an answer such as ``"From 2.4 to 5.1 seconds."``.

    Tolerant: the first two times in the text are taken, whatever the words around them
    (``"from 2.4s to 5.1s"``, ``"2.4 - 5.1"``, ``"00:02.4 to 00:05.1"``); a reversed pair is
    swapped and times outside ``[0, duration]`` are clipped, both noted in ``problem``. Fewer
    than two times, or a span entirely outside the video, give ``ok=False`` and the whole video.
    """
    if not duration > 0:
        raise ValueError(f"duration must be positive, got {duration}")
    whole = (0.0, float(duration))
    found = [(-1.0 if sign else 1.0) * _seconds(number) for sign, number in _TIME.findall(text)]
    if len(found) < 2:
        problem = "no time in the answer" if not found else "only one time in the answer"
        return ParsedSpan(*whole, ok=False, problem=problem)
    problems = []
    if len(found) > 2:
        problems.append(f"{len(found) - 2} extra number(s) ignored")
    start, end = found[0], found[1]
    if end < start:
        start, end = end, start
        problems.append("reversed")
    if end < 0 or start > duration:
        return ParsedSpan(*whole, ok=False, problem="; ".join([*problems, "span outside the video"]))
    if start < 0 or end > duration:
        start, end = max(start, 0.0), min(end, float(duration))
        problems.append("clipped to the video")
    return ParsedSpan(start, end, ok=True, problem="; ".join(problems) or None)


def frames_in_span(
    times: Sequence[float] | np.ndarray, start: float, end: float, decimals: int = 2
) -> tuple[int, int]:
    """``(first, last)`` sampled-frame indices (inclusive) whose times lie in ``[start, end]``.

    Both ends are inclusive because answers name frame times (see :func:`snap_span`); a margin
    of half the last printed decimal absorbs the rounding of the text. With no frame inside,
    the frame nearest the span's centre.
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if t.size == 0:
        raise ValueError("no sampled frames")
    margin = 0.5 * 10.0 ** (-int(decimals)) + 1e-9
    idx = np.flatnonzero((t >= start - margin) & (t <= end + margin))
    if idx.size:
        return int(idx[0]), int(idx[-1])
    nearest = int(np.argmin(np.abs(t - (start + end) / 2)))
    return nearest, nearest

"""The toy MLLM's word-level tokenizer and its Qwen-style chat template, built offline.

Every word the toy world can say (colours, shapes, sizes, verbs), the question words and the
answers are whole tokens; text is lower-cased first, so ``Is`` / ``is`` and ``Yes`` / ``yes`` share
an id. A prompt is rendered as LLaVA-OneVision's Qwen2 template renders it::

    <|im_start|>user\\n<video>\\n{question}<|im_end|>\\n<|im_start|>assistant\\n

or, for the Qwen2-VL family, as Qwen2-VL's template does (the video between its markers, the
question right after)::

    <|im_start|>user\\n<|vision_start|><|video_pad|><|vision_end|>{question}<|im_end|>\\n...

Training builds its token ids piece by piece (:func:`encode_conversation`), so the labels can be
placed on the answers only; a test checks the pieces against the template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from zsgrounding.toy.world import ACTIONS, COLOURS, SHAPES, SIZES

PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMAGE = "<image>"
VIDEO = "<video>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END, IMAGE, VIDEO)
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
QWEN_SPECIAL_TOKENS = (PAD, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)
UNK = "[UNK]"

# Template and question words; the toy world's own words are added from its tables.
BASE_WORDS = (
    "\n", "system", "user", "assistant", "you", "are", "helpful",
    ".", ",", "?", "!", ":", "'", "-",
    "yes", "no", "is", "are", "there", "does", "do", "any", "a", "an", "the", "that", "which",
    "in", "this", "video", "clip", "and", "or", "of", "it", "its", "to", "what", "describe",
    "thing", "things", "object", "objects", "shape", "shapes", "colour", "color", "size", "see",
    "can", "shown", "show", "please", "something", "one", "cat", "dog", "person", "man", "woman",
    "move", "grow", "shrink", "stay", "appear", "leave", "moving", "growing", "shrinking",
    "appearing", "leaving", "staying", "stays", "still", "moves", "left", "right", "up", "down",
    "grows", "shrinks", "appears", "leaves", "not", "scene", "frame", "frames", "none", "nothing",
    "colours", "colors", "sizes", "actions", "each", "list", "name", "all", "how", "many", "where", "with",
)  # fmt: skip
PLACE_WORDS = ("at", "top", "bottom", "middle", "then", "places")
"""Words of descriptions and captions that say where things are; only a vocabulary built for a
recipe that says places has them, so a recipe without keeps its ids (and its seeded model)."""

# Qwen2's chat template without the default system turn. A user turn holds either a plain string
# or content parts (video / text), which render the same: the video placeholder, a line break,
# then the text.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'video' %}{{- '<video>\\n' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _template(video_text: str) -> str:
    return CHAT_TEMPLATE.replace("'<video>\\n'", repr(video_text))


QWEN_CHAT_TEMPLATE = _template(f"{VISION_START}{VIDEO_PAD}{VISION_END}")
"""The same template with Qwen2-VL's rendering of a video part (no line break after it)."""


def vocabulary(places: bool = False) -> list[str]:
    """The word tokens in id order (``[UNK]`` first), with :data:`PLACE_WORDS` if ``places``; special
    tokens are added after them."""
    words = [*BASE_WORDS, *(PLACE_WORDS if places else ()), *SIZES, *COLOURS, *SHAPES]
    for verb in ACTIONS.values():
        words.extend(verb.split())
    # Lower-case like the normaliser, keep the first occurrence of each word.
    return [UNK, *dict.fromkeys(word.lower() for word in words)]


def build_tokenizer(family: str = "llava_onevision", places: bool = False) -> PreTrainedTokenizerFast:
    """Word-level fast tokenizer: lower-cased, spaces dropped, line breaks and punctuation kept.

    ``family`` picks the special tokens and chat template: ``llava_onevision`` (``<video>``) or
    ``qwen2_vl`` (``<|vision_start|><|video_pad|><|vision_end|>``). ``places``: the vocabulary has
    :data:`PLACE_WORDS` (a recipe whose texts say where things are).
    """
    if family not in ("llava_onevision", "qwen2_vl"):
        raise ValueError(f"unknown model family {family!r}")
    qwen = family == "qwen2_vl"
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocabulary(places))}, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=UNK, pad_token=PAD, eos_token=IM_END
    )
    specials = QWEN_SPECIAL_TOKENS if qwen else SPECIAL_TOKENS
    tokenizer.add_special_tokens({"additional_special_tokens": list(specials[1:])})
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE if qwen else CHAT_TEMPLATE
    tokenizer.model_max_length = 4096
    return tokenizer


def video_placeholder(tokenizer: PreTrainedTokenizerBase) -> str:
    """The token the video expands from: ``<|video_pad|>`` in a Qwen2-VL tokenizer, else ``<video>``."""
    return VIDEO_PAD if VIDEO_PAD in tokenizer.get_vocab() else VIDEO


def user_turn(question: str, with_video: bool, placeholder: str = VIDEO) -> str:
    """Template text of one user turn plus the assistant header (the generation prompt)."""
    video = ""
    if with_video:
        video = f"{VISION_START}{VIDEO_PAD}{VISION_END}" if placeholder == VIDEO_PAD else f"{VIDEO}\n"
    return f"{IM_START}user\n{video}{question}{IM_END}\n{IM_START}assistant\n"


def answer_text(answer: str) -> str:
    """Template text of an assistant answer after the header: ``answer<|im_end|>\\n``."""
    return f"{answer}{IM_END}\n"


@dataclass
class EncodedConversation:
    """Token ids of one conversation about one video, with the placeholder expanded.

    Attributes:
        input_ids: ``N`` ids; the video occupies ``[video_start, video_start + num_visual)``.
        labels: ``N`` ids: the next-token target at each position (``-100`` where no loss), i.e.
            ``labels[i]`` is what position ``i`` must predict (already shifted).
        video_start: position of the first visual token.
        answer_positions: for each turn, the position whose logits predict its first answer token.
    """

    input_ids: list[int]
    labels: list[int]
    video_start: int
    answer_positions: list[int]


def encode_conversation(
    tokenizer: PreTrainedTokenizerFast, turns: Sequence[tuple[str, str]], num_visual: int
) -> EncodedConversation:
    """Ids of ``turns`` (question, answer) as the chat template renders them, video in the first turn.

    Loss goes on each answer's tokens and its ``<|im_end|>`` (what the model must generate).
    """
    if not turns:
        raise ValueError("a conversation needs at least one turn")
    placeholder = video_placeholder(tokenizer)
    video_id = tokenizer.convert_tokens_to_ids(placeholder)
    ids: list[int] = []
    targets: list[int] = []  # target of each position: the next token, where it is supervised
    answer_positions: list[int] = []
    video_start = -1
    for index, (question, answer) in enumerate(turns):
        prompt = tokenizer(user_turn(question, index == 0, placeholder), add_special_tokens=False)[
            "input_ids"
        ]
        if index == 0:
            slot = prompt.index(video_id)
            prompt = prompt[:slot] + [video_id] * num_visual + prompt[slot + 1 :]
            video_start = slot
        reply = tokenizer(answer_text(answer), add_special_tokens=False)["input_ids"]
        ids.extend(prompt)
        targets.extend([-100] * len(prompt))
        answer_positions.append(len(ids) - 1)
        # The last prompt token predicts the first answer token; the trailing "\n" after
        # <|im_end|> is template, not generated, so it carries no loss.
        targets[-1] = reply[0]
        ids.extend(reply)
        targets.extend([*reply[1:-1], -100, -100])
    return EncodedConversation(ids, targets, video_start, answer_positions)


__all__ = [
    "CHAT_TEMPLATE",
    "QWEN_CHAT_TEMPLATE",
    "QWEN_SPECIAL_TOKENS",
    "SPECIAL_TOKENS",
    "EncodedConversation",
    "answer_text",
    "build_tokenizer",
    "encode_conversation",
    "user_turn",
    "video_placeholder",
    "vocabulary",
]

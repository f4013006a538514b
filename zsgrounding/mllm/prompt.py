"""Chat prompts with one video placeholder: rendering, tokenization, token positions, answer ids.

Shared by every family: the placeholder (``<video>``, ``<|video_pad|>``, ...) and the number of
visual tokens it expands to are family-specific, the rest is the tokenizer's chat template.
Positions are derived from the tokenized template (character offsets), never from hard-coded
offsets, so a template change moves them with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import TemplateError
from transformers import PreTrainedTokenizerBase

from zsgrounding.mllm.errors import ModelError

# A user turn whose content is a plain string (templates without multimodal content parts, such
# as Qwen2's own): the video placeholder on its own line, then the question, as LLaVA does.
DEFAULT_TEXT_CONTENT = "{video}\n{question}"


@dataclass
class VideoPrompt:
    """A tokenized chat prompt whose single video placeholder is expanded.

    Attributes:
        text: the rendered template, with the placeholder once.
        input_ids: ``N`` token ids, the placeholder repeated ``num_visual`` times.
        visual_start: position of the first expanded placeholder token; they occupy
            ``[visual_start, visual_start + num_visual)``.
        num_visual: number of placeholder tokens after expansion.
        special_positions: ``S`` positions of the tokens after the question (end of turn,
            assistant header), ascending; the last one is the answer position ``N - 1``.
        special_tokens: ``S`` token strings at those positions.
    """

    text: str
    input_ids: list[int]
    visual_start: int
    num_visual: int
    special_positions: list[int]
    special_tokens: list[str]

    @property
    def answer_position(self) -> int:
        """Position whose logits predict the first answer token (the last one)."""
        return len(self.input_ids) - 1


def render_video_prompt(
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    placeholder: str,
    chat_template: str | None = None,
    text_content: str = DEFAULT_TEXT_CONTENT,
    text_first: bool = False,
) -> str:
    """One user turn (video, then question) with the generation prompt, as template text.

    Multimodal templates (content parts ``{"type": "video"}``, ``{"type": "text"}``, as in the
    processors' templates) are tried first; a template that fails on them or does not emit the
    placeholder once is rendered again with plain string content ``text_content``.
    ``text_first`` puts the question before the video (parts and plain content alike).
    """
    if chat_template is None and tokenizer.chat_template is None:
        raise ModelError("the tokenizer has no chat template; pass chat_template=")
    content = [{"type": "video"}, {"type": "text", "text": question}]
    if text_first:
        content.reverse()
        text_content = "{question}\n{video}" if text_content == DEFAULT_TEXT_CONTENT else text_content
    parts = [{"role": "user", "content": content}]
    plain = [{"role": "user", "content": text_content.format(video=placeholder, question=question)}]
    for messages in (parts, plain):
        text = _render(tokenizer, messages, chat_template)
        if text is not None and text.count(placeholder) == 1 and question in text:
            return text
    raise ModelError(f"the chat template does not place one {placeholder!r} and the question in the prompt")


def _render(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, Any]], template: str | None
) -> str | None:
    try:
        # template None: the tokenizer's own (transformers resolves named templates).
        text = tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=True
        )
    except (TemplateError, TypeError, ValueError, KeyError):
        # A template written for the other content form: the caller tries the next one.
        return None
    return text if isinstance(text, str) else None


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]


def _encode_split(
    tokenizer: PreTrainedTokenizerBase, text: str, placeholder_id: int
) -> tuple[list[int], list[tuple[int, int]]]:
    """The text before and after the placeholder tokenized separately, as LLaVA's
    ``tokenizer_image_token`` does (a SentencePiece tokenizer then starts the second piece as a
    new text); offsets refer to ``text``."""
    placeholder = tokenizer.convert_ids_to_tokens(placeholder_id)
    at = text.find(placeholder)
    if at < 0 or text.count(placeholder) != 1:
        raise ModelError(f"expected one video placeholder {placeholder!r} in the prompt")
    head_ids, head_offsets = _encode(tokenizer, text[:at]) if at else ([], [])
    tail_start = at + len(placeholder)
    tail_ids, tail_offsets = _encode(tokenizer, text[tail_start:])
    shifted = [(a + tail_start, b + tail_start) for a, b in tail_offsets]
    return [*head_ids, placeholder_id, *tail_ids], [*head_offsets, (at, tail_start), *shifted]


def tokenize_video_prompt(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    question: str,
    placeholder_id: int,
    num_visual: int,
    split_at_video: bool = False,
) -> VideoPrompt:
    """Tokenize rendered ``text``, expand its placeholder and find the tokens after ``question``.

    ``split_at_video``: tokenize the text before and after the placeholder separately (the
    released zero-shot STVG code's LLaVA prompts), instead of the whole text at once.
    """
    if num_visual < 1:
        raise ValueError(f"num_visual must be positive, got {num_visual}")
    if not tokenizer.is_fast:
        raise ModelError("a fast tokenizer is needed (token offsets locate the question)")
    if split_at_video:
        ids, offsets = _encode_split(tokenizer, text, placeholder_id)
    else:
        ids, offsets = _encode(tokenizer, text)
    slots = [i for i, token_id in enumerate(ids) if token_id == placeholder_id]
    if len(slots) != 1:
        raise ModelError(f"expected one video placeholder token in the prompt, found {len(slots)}")
    slot = slots[0]
    question_end = text.rfind(question) + len(question)
    after = [i for i, (start, _) in enumerate(offsets) if start >= question_end and i != slot]
    if not after or after[-1] != len(ids) - 1:
        raise ModelError("the chat template emits no token after the question")

    def shift(i: int) -> int:
        return i + num_visual - 1 if i > slot else i

    expanded = ids[:slot] + [placeholder_id] * num_visual + ids[slot + 1 :]
    return VideoPrompt(
        text=text,
        input_ids=expanded,
        visual_start=slot,
        num_visual=num_visual,
        special_positions=[shift(i) for i in after],
        special_tokens=tokenizer.convert_ids_to_tokens([ids[i] for i in after]),
    )


def answer_token_id(tokenizer: PreTrainedTokenizerBase, prompt_text: str, word: str) -> int:
    """Id of the first token of ``word`` when the model answers right after ``prompt_text``.

    The prompt ends with the template's generation prompt, which decides the form of the first
    answer token: after a line break (Qwen-style ``<|im_start|>assistant\\n``) the answer starts
    without a leading space (BPE ``yes``, not ``Ġyes``); after a non-space character (Vicuna-
    style ``ASSISTANT:``) it starts with one (``Ġyes`` / ``▁yes``). The word is tokenized as that
    continuation of the prompt. Case is the caller's choice (``yes`` vs ``Yes``). A word that
    becomes several tokens, or the unknown token, raises :class:`ModelError`.
    """
    separator = "" if not prompt_text or prompt_text[-1].isspace() else " "
    prefix = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt_text + separator + word, add_special_tokens=False)["input_ids"]
    if full[: len(prefix)] == prefix and len(full) > len(prefix):
        continuation = full[len(prefix) :]
    else:
        # The word merged with the prompt's last token, which generation cannot do: take the
        # word as tokenized on its own.
        continuation = tokenizer(separator + word, add_special_tokens=False)["input_ids"]
    if len(continuation) != 1:
        raise ModelError(f"the answer word {word!r} is not a single token ({len(continuation)} tokens)")
    if tokenizer.unk_token_id is not None and continuation[0] == tokenizer.unk_token_id:
        raise ModelError(f"the answer word {word!r} is not in the tokenizer's vocabulary")
    return int(continuation[0])

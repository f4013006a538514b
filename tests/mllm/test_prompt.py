"""Chat prompt rendering, placeholder expansion, special positions and answer token ids."""

from __future__ import annotations

import pytest
from tiny_models import PARTS_TEMPLATE, QUESTION, make_tokenizer
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from zsgrounding.mllm import ModelError
from zsgrounding.mllm.prompt import answer_token_id, render_video_prompt, tokenize_video_prompt


def test_string_content_template() -> None:
    tokenizer = make_tokenizer()
    text = render_video_prompt(tokenizer, QUESTION, "<video>")
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n<video>\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    video_id = tokenizer.convert_tokens_to_ids("<video>")
    prompt = tokenize_video_prompt(tokenizer, text, QUESTION, video_id, num_visual=7)
    unexpanded = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(prompt.input_ids) == len(unexpanded) + 6
    assert prompt.input_ids[prompt.visual_start : prompt.visual_start + 7] == [video_id] * 7
    assert prompt.input_ids.count(video_id) == 7
    assert prompt.special_tokens == ["<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]
    assert prompt.special_positions == list(range(len(prompt.input_ids) - 5, len(prompt.input_ids)))
    assert prompt.answer_position == len(prompt.input_ids) - 1


def test_content_parts_template() -> None:
    tokenizer = make_tokenizer(chat_template=PARTS_TEMPLATE)
    text = render_video_prompt(tokenizer, QUESTION, "<video>")
    assert text == f"<|im_start|>user <video>\n{QUESTION}<|im_end|><|im_start|>assistant\n"
    prompt = tokenize_video_prompt(tokenizer, text, QUESTION, tokenizer.convert_tokens_to_ids("<video>"), 3)
    assert prompt.special_tokens == ["<|im_end|>", "<|im_start|>", "assistant", "\n"]
    tokens = tokenizer.convert_ids_to_tokens(prompt.input_ids)
    assert [tokens[i] for i in prompt.special_positions] == prompt.special_tokens


def test_template_without_placeholder_is_an_error() -> None:
    tokenizer = make_tokenizer(chat_template="{{ messages[0]['role'] }}")
    with pytest.raises(ModelError, match="one '<video>'"):
        render_video_prompt(tokenizer, QUESTION, "<video>")
    with pytest.raises(ModelError, match="no chat template"):
        render_video_prompt(make_tokenizer(chat_template=None), QUESTION, "<video>")


def test_placeholder_in_the_question_is_an_error() -> None:
    tokenizer = make_tokenizer()
    question = "is <video> there?"
    text = render_video_prompt(tokenizer, "is there?", "<video>").replace("is there?", question)
    with pytest.raises(ModelError, match="found 2"):
        tokenize_video_prompt(tokenizer, text, question, tokenizer.convert_tokens_to_ids("<video>"), 4)


def _tiny_bpe() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained offline on a few lines, so ``yes`` and ``Ġyes`` both exist."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = ["assistant\nyes", "assistant\nYes", "assistant\nno", "ASSISTANT: yes", "ASSISTANT: Yes"] * 20
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tokenizer


@pytest.mark.parametrize(
    ("prompt", "token", "decoded"),
    [("<|im_start|>assistant\n", "yes", "yes"), ("USER: hi ASSISTANT:", "Ġyes", " yes")],
    ids=["after_newline", "after_colon"],
)
def test_answer_token_follows_the_generation_prompt(prompt: str, token: str, decoded: str) -> None:
    tokenizer = _tiny_bpe()
    token_id = answer_token_id(tokenizer, prompt, "yes")
    assert tokenizer.convert_ids_to_tokens(token_id) == token
    assert tokenizer.decode([token_id]) == decoded
    assert answer_token_id(tokenizer, prompt, "Yes") != token_id


def test_answer_word_must_be_one_known_token() -> None:
    tokenizer = make_tokenizer()
    with pytest.raises(ModelError, match="not in the tokenizer's vocabulary"):
        answer_token_id(tokenizer, "<|im_start|>assistant\n", "maybe")
    with pytest.raises(ModelError, match="not a single token"):
        answer_token_id(_tiny_bpe(), "<|im_start|>assistant\n", "absolutely")

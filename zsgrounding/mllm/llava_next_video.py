"""LLaVA-NeXT-Video (``LlavaNextVideoForConditionalGeneration``).

The video path of transformers (5.x, ``LlavaNextVideoModel.get_video_features``): every frame
goes through the vision tower at its square ``image_size`` (no anyres tiling for videos); the
selected layer's hidden states (``vision_feature_layer``, ``-2`` by default) lose the CLS token
(``vision_feature_select_strategy="default"``), leaving ``p x p`` patch tokens,
``p = image_size // patch_size``. The patch grid then goes through ``vision_resampler``, a
spatial pooling of kernel and stride ``spatial_pool_stride`` in ``spatial_pool_mode``
(``average``, ``max`` or a learned ``conv``), which leaves ``p // s`` tokens per side, and only
then through the projector. The frames are concatenated in order with no newline token at all
(``image_newline`` is for images only). So ``<video>`` expands to ``T * h * w`` tokens,
frame-major, row-major inside a frame, and all of them form the visual grid.

Real checkpoints (``llava-hf/LLaVA-NeXT-Video-7B-hf``): CLIP ViT-L/14 at 336 px -> 24 x 24
patches, stride 2 -> 12 x 12 = 144 tokens per frame. The zero-shot paper's released code ran it with
6 x 6 tokens per frame, i.e. stride 4: pass ``spatial_pool_stride=4``.

The pooling stride override. transformers builds the pooling module once, from the config, when
the model is constructed: changing ``config.spatial_pool_stride`` later has no effect on its
own. The adapter therefore keeps the module in step with the config before it computes
features: it sets the config's stride and replaces the parameter-free ``average`` / ``max``
pooling with one of the new stride, so the model's own forward pools the same way. A ``conv``
pooling has weights learned for its kernel size and cannot be re-strided (:class:`ModelError`).
An override must divide ``p`` so that the grid covers the whole frame; a checkpoint's own stride
is taken as it is (if it does not divide ``p``, the model drops the last ``p mod s`` patch rows
and columns, and the grid's cells lie ``s`` patches apart from the top left).

Preprocessing: the official processor resizes the shortest edge to the tower's size and centre-
crops; here the whole frame is resized to the square input without a crop (see ``preprocess``),
so the grid covers the whole frame, which the tube scorer relies on. Normalisation defaults to
CLIP's mean and std (the tower's), unless the checkpoint's preprocessor files say otherwise.

Prompts: the checkpoint's chat template (a processor's ``chat_template.json``, else the
tokenizer's), else :data:`VICUNA_VIDEO_TEMPLATE`, all ending in ``ASSISTANT:``: the special
tokens after the question are the pieces of `` ASSISTANT:`` and the answer starts with a leading
space (``▁yes`` / ``Ġyes``). The beginning-of-sequence token the processor's tokenizer call adds
(Llama's ``<s>``) is written in front of the rendered prompt, so positions count it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlavaNextVideoForConditionalGeneration, PreTrainedTokenizerBase

from zsgrounding.mllm.errors import ModelError
from zsgrounding.mllm.llava import LlavaVideoAdapter, projected_patch_grid
from zsgrounding.mllm.options import VICUNA_V1_TEMPLATE, AdapterOptions
from zsgrounding.mllm.preprocess import CLIP_MEAN, CLIP_STD, FramePreprocessing

# Parameter-free pooling modes whose stride can be changed after loading.
_RESTRIDABLE_MODES = {"average": nn.AvgPool2d, "max": nn.MaxPool2d}

# Vicuna v1 turn layout, as LLaVA-NeXT-Video's processor renders it ("USER: <video>\n... ASSISTANT:"),
# for checkpoints that ship no template. Accepts string content and content parts.
VICUNA_VIDEO_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + ' ' }}"
    "{% else %}{{ message['role'] | upper + ': ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ ' ' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


class LlavaNextVideoAdapter(LlavaVideoAdapter):
    """Adapter of ``LlavaNextVideoForConditionalGeneration`` checkpoints (LLaVA-NeXT-Video).

    CLIP's normalisation where the checkpoint gives none; the prompt template falls back to
    :data:`VICUNA_VIDEO_TEMPLATE`; ``from_pretrained`` also takes ``spatial_pool_stride``, which
    overrides the checkpoint's pooling stride (the pooling otherwise comes from the checkpoint's
    ``spatial_pool_stride`` / ``spatial_pool_mode``). The attributes are
    :class:`LlavaVideoAdapter`'s; ``bos_prefix`` is the tokenizer's BOS token when its plain call
    adds one (as the processor's call does), else empty.
    """

    family = "llava_next_video"
    supported_options = ("frame_size", "prompt", "answer_tokens", "pool_stride", "pool_order")
    model_class = LlavaNextVideoForConditionalGeneration
    default_image_mean = CLIP_MEAN
    default_image_std = CLIP_STD
    reference_template = VICUNA_V1_TEMPLATE
    fallback_template = VICUNA_VIDEO_TEMPLATE
    constructor_keywords = ("spatial_pool_stride",)

    def __init__(
        self,
        model: LlavaNextVideoForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        preprocessing: FramePreprocessing | None = None,
        chat_template: str | None = None,
        num_frames: int | None = None,
        answer_words: tuple[str, str] = ("yes", "no"),
        spatial_pool_stride: int | None = None,
        options: AdapterOptions | None = None,
    ) -> None:
        """Wrap a loaded model.

        ``spatial_pool_stride`` (or ``options.pool_stride``) overrides the checkpoint's pooling
        stride (the released zero-shot STVG code: 4, i.e. 6 x 6 tokens per frame at 336 px); it
        changes ``model`` itself (its config and its pooling module), see
        :meth:`set_spatial_pool_stride`. ``options.prompt == "reference"`` renders prompts with
        :data:`VICUNA_V1_TEMPLATE` whatever the checkpoint ships.
        """
        super().__init__(
            model,
            tokenizer,
            preprocessing=preprocessing,
            chat_template=chat_template,
            num_frames=num_frames,
            answer_words=answer_words,
            options=options,
        )
        self.bos_prefix = _bos_prefix(tokenizer)
        if spatial_pool_stride is None:
            spatial_pool_stride = self.options.pool_stride
        if spatial_pool_stride is not None:
            self.set_spatial_pool_stride(spatial_pool_stride)
        else:
            self._sync_pooling()

    @property
    def spatial_pool_stride(self) -> int:
        """The pooling stride the features are computed with (the model config's)."""
        return int(self.model.config.spatial_pool_stride)

    @property
    def spatial_pool_mode(self) -> str:
        """``average``, ``max`` or ``conv`` (the model config's)."""
        return str(self.model.config.spatial_pool_mode)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(h, w)`` tokens per frame: ``p // stride`` per side for ``p x p`` patches."""
        side = self._patches // self.spatial_pool_stride
        return side, side

    def set_spatial_pool_stride(self, stride: int) -> None:
        """Pool frames with ``stride`` from now on, in the model's own forward too.

        Sets ``model.config.spatial_pool_stride`` and rebuilds the model's ``average`` / ``max``
        pooling module with it. ``stride`` must divide the tower's patch grid side (the grid
        must cover the whole frame); a ``conv`` pooling cannot change stride. Both raise
        :class:`ModelError`.
        """
        stride = int(stride)
        if stride < 1 or self._patches % stride != 0:
            raise ModelError(
                f"spatial_pool_stride must divide the {self._patches} x {self._patches} patch grid, got {stride}"
            )
        previous = self.model.config.spatial_pool_stride
        self.model.config.spatial_pool_stride = stride
        try:
            self._sync_pooling()
        except ModelError:
            self.model.config.spatial_pool_stride = previous
            raise

    def _sync_pooling(self) -> None:
        """Make the model's pooling module use the config's stride (transformers reads it at init only)."""
        resampler = self.model.model.vision_resampler
        stride, mode = self.spatial_pool_stride, self.spatial_pool_mode
        if _stride_of(resampler.pool) == stride:
            return
        pool_class = _RESTRIDABLE_MODES.get(mode)
        if pool_class is None:
            raise ModelError(
                f"the {mode!r} spatial pooling has weights for stride {_stride_of(resampler.pool)}; "
                f"it cannot pool with stride {stride}"
            )
        if not 1 <= stride <= self._patches:
            raise ModelError(f"spatial_pool_stride {stride} does not fit the {self._patches}-patch grid")
        resampler.pool = pool_class(kernel_size=stride, stride=stride)

    def _compute_video_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(T * h * w, D)``: the model's own ``get_video_features`` (pool the tower's patches,
        then project), or with ``options.pool_order == "project_then_pool"`` the original
        LLaVA-NeXT order: project every patch token, then pool the projected grid with the same
        parameter-free pooling."""
        self._sync_pooling()
        if self.options.pool_order == "project_then_pool":
            return self._project_then_pool(pixel_values)
        return self._model_video_features(pixel_values)

    def _project_then_pool(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.spatial_pool_mode not in _RESTRIDABLE_MODES:
            raise ModelError(f"the {self.spatial_pool_mode!r} pooling cannot pool projected tokens")
        grid = projected_patch_grid(self.model, pixel_values)  # (T, D, p, p)
        pooled = self.model.model.vision_resampler.pool(grid)  # (T, D, h, w)
        return pooled.flatten(2).transpose(1, 2).reshape(-1, grid.shape[1])


def _stride_of(pool: nn.Module) -> int:
    stride = getattr(pool, "stride", None)
    if isinstance(stride, tuple | list):
        if len(set(stride)) != 1:
            raise ModelError(f"non-square pooling stride {tuple(stride)}")
        stride = stride[0]
    if not isinstance(stride, int):
        raise ModelError(f"cannot read the stride of the pooling module {type(pool).__name__}")
    return stride


def _bos_prefix(tokenizer: PreTrainedTokenizerBase) -> str:
    """The BOS token text if the tokenizer's plain call adds it (as the processor's call does), else ``""``."""
    bos_id, bos = tokenizer.bos_token_id, tokenizer.bos_token
    if bos_id is None or not isinstance(bos, str):
        return ""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    return bos if full[:1] == [bos_id] and plain[:1] != [bos_id] else ""

"""LLaVA-OneVision and LLaVA-Video (``LlavaOnevisionForConditionalGeneration``).

The video path of transformers (5.x, ``LlavaOnevisionModel.get_video_features``): every frame
goes through the vision tower at its square ``image_size`` (no anyres tiling for videos), the
selected layer's patch tokens (``image_size // patch_size`` squared) through the projector,
then a 2x bilinear downsampling of the patch grid to ``ceil(p / 2)`` squared tokens per frame
(``apply_pooling``); the frames are concatenated in order and ONE ``image_newline`` token is
appended after the whole video. So ``<video>`` expands to ``T * h * w + 1`` tokens, frame-major,
row-major inside a frame, and the visual grid is the first ``T * h * w`` of them.

Real checkpoints: SigLIP at 384 px, patch 14 -> 27 x 27 patches -> 14 x 14 = 196 tokens per
frame (``ceil(27 / 2)``; the pooling is then not an exact 2 x 2 average).

``AdapterOptions.pool_stride`` replaces the 2 by another stride with the same operation
(bilinear resize of the projected patch grid to ``ceil(p / stride)`` per side, ``align_corners``
off, as both transformers and the original LLaVA-NeXT code do it): the released zero-shot STVG
code used 5, i.e. 6 x 6 tokens per frame. ``latent_on_separators`` lets the LRA latent cover the
newline token too, as the released code's latent covers its whole visual slice.
"""

from __future__ import annotations

import math

import torch
from transformers import LlavaOnevisionForConditionalGeneration

from zsgrounding.mllm.llava import LlavaVideoAdapter, projected_patch_grid
from zsgrounding.mllm.options import QWEN_1_5_TEMPLATE


class LlavaOnevisionAdapter(LlavaVideoAdapter):
    """Adapter of ``LlavaOnevisionForConditionalGeneration`` checkpoints (LLaVA-OneVision, LLaVA-Video).

    SigLIP's normalisation where the checkpoint gives none; ``options.prompt == "reference"``
    renders prompts with :data:`QWEN_1_5_TEMPLATE`. The attributes are
    :class:`LlavaVideoAdapter`'s, plus ``pool_stride``, the stride of the bilinear pooling.
    """

    family = "llava_onevision"
    supported_options = (
        "frame_size",
        "prompt",
        "answer_tokens",
        "pool_stride",
        "pool_order",
        "latent_on_separators",
    )
    model_class = LlavaOnevisionForConditionalGeneration
    reference_template = QWEN_1_5_TEMPLATE
    # One image_newline token after the whole video.
    num_separators = 1

    @property
    def pool_stride(self) -> int:
        """The stride of the bilinear pooling: ``options.pool_stride``, else transformers' 2."""
        return self.options.pool_stride or 2

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(h, w)`` tokens per frame after the model's bilinear pooling (2x unless ``pool_stride``)."""
        # apply_pooling: the tower's patch grid, bilinearly resized to ceil(p / stride) per side
        # (transformers' stride is 2; pool_order is accepted as it is already projector first).
        side = math.ceil(self._patches / self.pool_stride)
        return side, side

    def _compute_video_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(T * h * w + 1, D)``: the model's own ``get_video_features``; with another pooling
        stride the same steps (projected patches, bilinear resize, one newline) with that stride."""
        if self.pool_stride == 2:
            return self._model_video_features(pixel_values)
        return self._features_with_stride(pixel_values)

    def _features_with_stride(self, pixel_values: torch.Tensor) -> torch.Tensor:
        grid = projected_patch_grid(self.model, pixel_values)  # (T, D, p, p)
        pooled = torch.nn.functional.interpolate(grid, size=self.grid_shape, mode="bilinear")
        tokens = pooled.permute(0, 2, 3, 1).reshape(-1, grid.shape[1])
        newline = self.model.model.image_newline[None].to(tokens.dtype)
        return torch.cat([tokens, newline])

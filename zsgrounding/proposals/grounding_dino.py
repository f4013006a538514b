"""Open-vocabulary box detection with Grounding DINO (transformers' ``GroundingDinoForObjectDetection``).

Frames are prepared here with PIL and numpy, as the checkpoint's image processor would (resize the
short side, cap the long side, rescale, normalise; the tests check the result against
``GroundingDinoImageProcessorPil``). transformers' default image processor needs torchvision, and
all frames of a clip share one size, so a batch needs no padding and no pixel mask. The post-processing follows the usual Grounded-SAM settings: a query is kept when its best
text-token probability is above ``box_threshold``; its phrase is made of the prompt's words whose
probability is above ``text_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, GroundingDinoForObjectDetection

from zsgrounding.boxes import cxcywh_norm_to_xyxy
from zsgrounding.mllm.errors import ModelError, first_line
from zsgrounding.mllm.files import HUB_KWARGS, checkpoint_file, read_json
from zsgrounding.mllm.hub import require_checkpoint
from zsgrounding.mllm.preprocess import FramePreprocessing, normalise_frames, resize_frames
from zsgrounding.proposals.detections import FrameDetections

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The Grounding DINO image processor's defaults, used when a checkpoint has no preprocessor file.
DEFAULT_SHORTEST_EDGE = 800
DEFAULT_LONGEST_EDGE = 1333
DEFAULT_NORMALISATION = FramePreprocessing(
    size=DEFAULT_SHORTEST_EDGE,
    image_mean=IMAGENET_MEAN,
    image_std=IMAGENET_STD,
    resample=int(Image.Resampling.BILINEAR),
)


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of :class:`GroundingDinoDetector`.

    Attributes:
        box_threshold: a query is kept when the sigmoid of its best prompt-token logit is ``>`` this.
        text_threshold: the prompt tokens whose probability is ``>`` this form the query's phrase.
        image_size: short side (pixels) frames are resized to; the long side cap scales with it.
            ``None``: the checkpoint's ``shortest_edge`` / ``longest_edge`` (800 / 1333).
        batch_size: frames per forward pass.
    """

    box_threshold: float = 0.25
    text_threshold: float = 0.3
    image_size: int | None = None
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.image_size is not None and self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


@dataclass(frozen=True)
class DetectorPreprocessing:
    """How frames become Grounding DINO's ``pixel_values``.

    Attributes:
        shortest_edge: the short side of a frame is resized to this many pixels...
        longest_edge: ...unless the long side would exceed this (``None``: no cap); then the long
            side is this and the short side smaller. The aspect ratio is kept.
        normalisation: mean, std, rescale factor and resampling filter (its ``size`` is unused).
    """

    shortest_edge: int = DEFAULT_SHORTEST_EDGE
    longest_edge: int | None = DEFAULT_LONGEST_EDGE
    normalisation: FramePreprocessing = DEFAULT_NORMALISATION

    @classmethod
    def from_dict(cls, settings: dict[str, Any], source: Path | None = None) -> DetectorPreprocessing:
        """Read a transformers ``preprocessor_config.json`` of a Grounding DINO checkpoint."""
        merged: dict[str, Any] = {"image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "resample": 2}
        merged.update({k: v for k, v in settings.items() if v is not None})
        size = settings.get("size")
        shortest, longest = DEFAULT_SHORTEST_EDGE, settings.get("max_size", DEFAULT_LONGEST_EDGE)
        if isinstance(size, dict) and "shortest_edge" in size:
            shortest, longest = size["shortest_edge"], size.get("longest_edge", longest)
        elif isinstance(size, int):
            shortest = size
        elif size is not None:
            raise ModelError(f"{source or 'preprocessor config'}: unsupported size {size!r}")
        normalisation = FramePreprocessing.from_dict(merged, int(shortest), source)
        return cls(int(shortest), None if longest is None else int(longest), normalisation)

    @classmethod
    def from_checkpoint(cls, path_or_id: str | Path, **hub_kwargs: Any) -> DetectorPreprocessing:
        """Settings from the checkpoint's ``preprocessor_config.json``, or the defaults without one."""
        path = checkpoint_file(path_or_id, "preprocessor_config.json", **hub_kwargs)
        return cls() if path is None else cls.from_dict(read_json(path), source=path)

    def with_image_size(self, image_size: int | None) -> DetectorPreprocessing:
        """The same settings with the short side set to ``image_size`` (long side cap scaled alike)."""
        if image_size is None or image_size == self.shortest_edge:
            return self
        longest = None
        if self.longest_edge is not None:
            longest = max(image_size, round(image_size * self.longest_edge / self.shortest_edge))
        return DetectorPreprocessing(image_size, longest, self.normalisation)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` a ``height x width`` frame is resized to.

        As transformers' image processor computes it: the short side becomes ``shortest_edge``
        (rounded when the long side cap lowers it) and the long side is truncated, not rounded, so
        a 480 x 640 frame becomes 800 x 1066.
        """
        short, long = min(height, width), max(height, width)
        target: int = self.shortest_edge
        capped: float | None = None  # the exact short side when the long-side cap lowers it
        if self.longest_edge is not None and long / short * target > self.longest_edge:
            capped = self.longest_edge * short / long
            target = round(capped)
        if short == target:
            return height, width
        exact = capped if capped is not None else target
        if width < height:
            return max(1, int(exact * height / width)), target
        return target, max(1, int(exact * width / height))

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """Frames ``(T, H, W, 3)`` uint8 -> ``pixel_values`` ``(T, 3, h, w)`` float32."""
        height, width = self.resized_size(frames.shape[1], frames.shape[2])
        resized = resize_frames(frames, height, width, self.normalisation.resample)
        return normalise_frames(resized, self.normalisation)


def prompt_text(noun_phrase: str) -> str:
    """The detector's text prompt: lower case, whitespace collapsed, ending in ``"."``.

    ``"The Man in red"`` -> ``"the man in red."``.
    """
    text = " ".join(noun_phrase.split()).lower().rstrip(".").rstrip()
    if not text:
        raise ValueError(f"empty noun phrase {noun_phrase!r}")
    return text + "."


def decode_detections(
    logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    input_ids: Sequence[int],
    phrase_ids: set[int],
    tokenizer: Any,
    frame_id: int,
    width: int,
    height: int,
    config: DetectorConfig,
) -> FrameDetections:
    """One frame's raw outputs -> :class:`FrameDetections` in native pixels, best score first.

    Args:
        logits: ``(Q, L')`` query-token logits, ``L' >= L``; positions past the prompt are ignored.
        pred_boxes: ``(Q, 4)`` normalised ``cxcywh`` boxes.
        input_ids: the ``L`` prompt token ids (with the tokenizer's special tokens).
        phrase_ids: ids that may be part of a phrase (the prompt's words, not ``[CLS]``/``.``).
        tokenizer: decodes the phrase tokens.
        frame_id, width, height: the native frame the outputs belong to.
        config: the thresholds.
    """
    probs = torch.sigmoid(logits[:, : len(input_ids)].float())
    scores, _ = probs.max(dim=-1)
    keep = torch.nonzero(scores > config.box_threshold).flatten()
    keep = keep[torch.argsort(scores[keep], descending=True, stable=True)].tolist()
    boxes = cxcywh_norm_to_xyxy(pred_boxes[keep].float().cpu().numpy().reshape(-1, 4), width, height)
    boxes = np.clip(boxes, 0.0, [width, height, width, height])  # the head may reach past the frame
    labels = []
    for query in keep:
        picked = [
            tok for tok, p in zip(input_ids, probs[query].tolist(), strict=True) if p > config.text_threshold
        ]
        words = [tok for tok in picked if tok in phrase_ids]
        labels.append(tokenizer.decode(words, skip_special_tokens=True).strip() if words else "")
    return FrameDetections(frame_id, boxes, scores[keep].cpu().numpy().astype(np.float64), labels)


class GroundingDinoDetector:
    """Detects the boxes of a noun phrase on video frames.

    Build with :meth:`from_pretrained` (a local directory or a hub id) or :meth:`from_model`.
    """

    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        tokenizer: Any,
        config: DetectorConfig | None = None,
        preprocessing: DetectorPreprocessing | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or DetectorConfig()
        self.preprocessing = (preprocessing or DetectorPreprocessing()).with_image_size(
            self.config.image_size
        )

    @classmethod
    def from_model(
        cls,
        model: GroundingDinoForObjectDetection,
        tokenizer: Any,
        config: DetectorConfig | None = None,
        preprocessing: DetectorPreprocessing | None = None,
    ) -> GroundingDinoDetector:
        """Wrap an already loaded model and tokenizer (default preprocessing unless given)."""
        return cls(model, tokenizer, config, preprocessing)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        config: DetectorConfig | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **hub_kwargs: Any,
    ) -> GroundingDinoDetector:
        """Load model, tokenizer and preprocessing settings from a checkpoint directory or hub id.

        ``hub_kwargs`` (``revision``, ``cache_dir``, ``local_files_only``, ...) locate every file.
        """
        unknown = set(hub_kwargs) - set(HUB_KWARGS)
        if unknown:
            raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
        require_checkpoint(
            path_or_id,
            "detector",
            offline="`--detector toy --tracker iou` (it knows only the toy world)",
            **hub_kwargs,
        )
        try:
            model = GroundingDinoForObjectDetection.from_pretrained(path_or_id, dtype=dtype, **hub_kwargs)
            tokenizer = AutoTokenizer.from_pretrained(path_or_id, **hub_kwargs)
        except OSError as exc:
            raise ModelError(f"{path_or_id}: cannot load the detector ({first_line(exc)})") from exc
        if device is not None:
            model = model.to(device)
        preprocessing = DetectorPreprocessing.from_checkpoint(path_or_id, **hub_kwargs)
        return cls(model, tokenizer, config, preprocessing)

    def _phrase_ids(self, input_ids: Sequence[int]) -> set[int]:
        # Delimiters the model splits phrases at ("." etc.) and the tokenizer's specials never
        # belong to a phrase.
        excluded = set(self.tokenizer.all_special_ids)
        delimiters = getattr(self.model.model, "special_tokens", None)
        if isinstance(delimiters, torch.Tensor):
            excluded |= set(delimiters.tolist())
        return {tok for tok in input_ids if tok not in excluded}

    @torch.inference_mode()
    def detect(
        self,
        frames: np.ndarray,
        frame_ids: Sequence[int] | np.ndarray,
        text: str,
        size: tuple[int, int] | None = None,
    ) -> list[FrameDetections]:
        """Detect ``text`` on every frame.

        Args:
            frames: ``(T, H, W, 3)`` uint8 RGB.
            frame_ids: ``(T,)`` native frame ids.
            text: the noun phrase; it is normalised by :func:`prompt_text`.
            size: ``(height, width)`` the boxes are expressed in, normally the native frame size
                when ``frames`` were resized; ``None``: the frames' own size.

        Returns:
            ``T`` :class:`FrameDetections`, pixel ``xyxy`` boxes inside the frame, best score first.
        """
        frames = np.asarray(frames)
        ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        if ids.shape[0] != frames.shape[0]:
            raise ValueError(f"{frames.shape[0]} frames but {ids.shape[0]} frame ids")
        if frames.shape[0] == 0:
            return []
        height, width = size if size is not None else frames.shape[1:3]
        encoded = self.tokenizer(
            prompt_text(text), return_tensors="pt", truncation=True, max_length=self.model.config.max_text_len
        )
        input_ids = encoded["input_ids"][0].tolist()
        phrase_ids = self._phrase_ids(input_ids)
        device, dtype = self.model.device, self.model.dtype
        text_inputs = {k: v.to(device) for k, v in encoded.items()}
        results: list[FrameDetections] = []
        step = self.config.batch_size
        for start in range(0, frames.shape[0], step):
            chunk = frames[start : start + step]
            pixels = self.preprocessing(chunk).to(device=device, dtype=dtype)
            batch = {k: v.expand(chunk.shape[0], -1) for k, v in text_inputs.items()}
            outputs = self.model(pixel_values=pixels, **batch)
            for i in range(chunk.shape[0]):
                results.append(
                    decode_detections(
                        outputs.logits[i],
                        outputs.pred_boxes[i],
                        input_ids,
                        phrase_ids,
                        self.tokenizer,
                        int(ids[start + i]),
                        width,
                        height,
                        self.config,
                    )
                )
        return results

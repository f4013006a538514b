"""A pixel-based stand-in detector for the toy world: colour, shape and size words matched on frames.

:class:`ToyColourDetector` has :meth:`GroundingDinoDetector.detect
<zsgrounding.proposals.grounding_dino.GroundingDinoDetector.detect>`'s interface, so the Uni-STG
synthesis (:func:`spacevllm.synth.synthesize`) and the proposal path run end to end on toy-world
videos without downloading a checkpoint. It looks only at the pixels and the prompt text; it is
a hand-written rule, not a learned model.

How it reads a prompt (lower-cased words, first match of each kind wins):

- colour: a name of :attr:`ToyDetectorConfig.palette` (the toy world's :data:`COLOURS`), or a basic
  colour term of :data:`zsgrounding.baselines.COLOUR_RGB` (``"pink"``, ``"grey"``...) matched at
  that anchor colour;
- shape: ``circle``, ``square``, ``triangle``, ``diamond``, ``cross`` (plurals too);
- size: ``small`` / ``big`` (``little``, ``tiny``, ``large`` as synonyms).

How it finds boxes, per frame:

1. Every pixel takes the nearest palette colour (plus the prompt's colour when it is not in the
   palette) if it lies within ``colour_distance`` of it. Distances are measured in BT.601
   ``(Y, Cb, Cr)`` with the two colour axes scaled by ``chroma_weight``
   (:func:`colour_features`): the videos are H.264 in yuv420p, which keeps brightness per pixel
   but colour per 2x2 block, so a shape's edge pixels keep its brightness and lose part of its
   colour. Nearest, so two close palette colours never claim the same pixel.
2. The connected components of the prompt's colour become boxes (pixel ``xyxy``, exclusive
   right/bottom, in the native frame via ``size``). Without a colour word every palette colour's
   components are candidates. Components under ``min_area`` pixels (compression specks) or over
   ``max_area_fraction`` of the frame (a background, not a shape) are dropped.
3. Confidence = colour purity x shape match x size match, in ``[0, 1]``:

   - purity: the mean over the component of ``exp(-d^2 / (2 purity_sigma^2))``, ``d`` the pixel's
     colour distance; decoded toy shapes sit a few units from their palette colour inside and
     up to ``colour_distance`` on their edges.
   - shape: the IoU of the component's mask with the named shape's template drawn in the
     component's box (:func:`shape_template`). A template's area is the shape's expected fill
     ratio of its box (:data:`FILL_RATIOS`: square 1, circle pi/4, triangle and diamond 1/2,
     cross 5/9), and the IoU is at most the ratio of the two fill ratios, so the fill ratio is
     part of it; the template also tells shapes of equal fill apart (a triangle's widest row is at
     its base, a diamond's at its middle: their IoU is 1/2). The IoU is multiplied by
     ``exp(-shape_sharpness * margin)``, ``margin`` how much better the best other shape fits,
     so a circle prompted as "square" (IoU pi/4 with the full box) scores low. Without a shape
     word: the best IoU over all shapes (a shapeless blob matches none well).
   - size: the box side ``sqrt(w h)`` in native pixels against ``size_split_px`` (17, between
     the toy world's small 12 px and big 24 px sides, which grow/shrink keep within 16 and from
     18 px); a size word that disagrees multiplies by ``size_penalty``, with a linear ramp
     ``size_ramp_px`` wide around the split (a decoded box can be a pixel off).

Boxes with confidence under ``min_score`` are dropped; the rest come best first, as Grounding
DINO's do.

What it cannot do: see anything outside its colour and shape vocabulary (a prompt with neither,
e.g. ``"person"``, finds nothing); separate touching shapes of one colour (they merge into one
box; toy-world shapes keep a 2 px gap); understand actions, relations or any word but the above
(the toy world's attribute distractors, same colour, shape and size as the target, score about
as the target does, so which of them is boxed first is down to small pixel differences); cope
with lighting, shaded or textured objects, or occlusion (a half-hidden shape fits its template
badly); generalise beyond flat colours on a dark background.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from zsgrounding.baselines import COLOUR_RGB
from zsgrounding.proposals.detections import FrameDetections
from zsgrounding.toy.world import COLOURS, SHAPES

FILL_RATIOS: dict[str, float] = {
    "circle": math.pi / 4,
    "square": 1.0,
    "triangle": 0.5,
    "diamond": 0.5,
    "cross": 5 / 9,  # two bars a third of the side thick: 2/3 - (1/3)^2
}
"""Expected fraction of its bounding box a shape fills (the area of :func:`shape_template`)."""
SIZE_WORDS: dict[str, str] = {
    "small": "small",
    "little": "small",
    "tiny": "small",
    "big": "big",
    "large": "big",
}
_TEMPLATE_CACHE_LIMIT = 4096  # (height, width) pairs kept per detector
_CHUNK_VALUES = 4_000_000
# RGB -> (Y, Cb, Cr) of ITU-R BT.601, full range (what H.264 in yuv420p stores)
_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)


@dataclass(frozen=True)
class ToyDetectorConfig:
    """Thresholds of :class:`ToyColourDetector` (see the module docstring for how they are used).

    Attributes:
        palette: colour name -> RGB the pixels are matched against; the toy world's by default.
        colour_distance: a pixel belongs to its nearest palette colour when within this distance
            (of :func:`colour_features`). Measured on 60 toy videos: at 30 every shape's box is
            recovered (mean IoU 0.995) with 2 stray components in 7,099; at 40 the dark
            background starts to join the darkest colours (~9,700 stray components).
        chroma_weight: scale of the Cb and Cr axes against brightness (see the module docstring).
        purity_sigma: distance scale of the colour purity term.
        min_area: components with fewer pixels (of the frames as given) are noise.
        max_area_fraction: components covering more of the frame than this are backgrounds.
        connectivity: 1: 4-connected components; 2: 8-connected.
        shape_sharpness: how fast the shape term falls when another shape fits better.
        size_split_px: box side (native pixels) between "small" and "big".
        size_penalty: factor for a component whose size disagrees with the prompt's size word.
        size_ramp_px: width of the ramp from ``size_penalty`` to 1 around ``size_split_px``.
        min_score: boxes with a lower confidence are not returned.
    """

    palette: Mapping[str, tuple[int, int, int]] = field(default_factory=lambda: dict(COLOURS))
    colour_distance: float = 30.0
    chroma_weight: float = 0.35
    purity_sigma: float = 20.0
    min_area: int = 12
    max_area_fraction: float = 0.5
    connectivity: int = 1
    shape_sharpness: float = 8.0
    size_split_px: float = 17.0
    size_penalty: float = 0.25
    size_ramp_px: float = 2.0
    min_score: float = 0.05

    def __post_init__(self) -> None:
        problems = []
        if not self.palette:
            problems.append("the palette is empty")
        if self.colour_distance <= 0 or self.purity_sigma <= 0 or self.chroma_weight <= 0:
            problems.append("colour_distance, chroma_weight and purity_sigma must be positive")
        if self.min_area < 1:
            problems.append(f"min_area must be >= 1, got {self.min_area}")
        if not 0 < self.max_area_fraction <= 1:
            problems.append(f"max_area_fraction must be in (0, 1], got {self.max_area_fraction}")
        if self.connectivity not in (1, 2):
            problems.append(f"connectivity must be 1 or 2, got {self.connectivity}")
        if self.shape_sharpness < 0 or self.size_split_px <= 0 or self.size_ramp_px <= 0:
            problems.append("need shape_sharpness >= 0, size_split_px > 0 and size_ramp_px > 0")
        if not 0 <= self.size_penalty <= 1 or not 0 <= self.min_score <= 1:
            problems.append("size_penalty and min_score must be in [0, 1]")
        if problems:
            raise ValueError("invalid ToyDetectorConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class ToyPrompt:
    """What :class:`ToyColourDetector` understood of a prompt; ``None``: the prompt does not say.

    ``label`` is the understood words in prompt order (the detections' phrase).
    """

    colour: str | None
    shape: str | None
    size: str | None
    label: str


def parse_prompt(text: str, palette: Mapping[str, tuple[int, int, int]] | None = None) -> ToyPrompt:
    """The first colour, shape and size word of ``text`` (see the module docstring)."""
    palette = COLOURS if palette is None else palette
    colour = shape = size = None
    words: list[str] = []
    for word in re.findall(r"[a-z]+", text.lower()):
        singular = next((w for w in (word, word[:-1], word[:-2]) if w in SHAPES), None)
        if colour is None and (word in palette or word in COLOUR_RGB):
            colour = word
        elif shape is None and singular is not None:
            shape = singular
        elif size is None and word in SIZE_WORDS:
            size = SIZE_WORDS[word]
        else:
            continue
        words.append(word)
    return ToyPrompt(colour, shape, size, " ".join(words))


def shape_template(shape: str, height: int, width: int) -> np.ndarray:
    """``(height, width)`` bool: the pixels whose centres fall inside ``shape`` drawn in the box.

    The shapes are drawn as the toy world draws them: circle inscribed, triangle apex up with
    its base on the bottom edge, diamond touching the middle of each edge, cross of two bars a
    third of the side thick. The mean of the template tends to :data:`FILL_RATIOS` as the box grows.
    """
    v = (np.arange(height)[:, None] + 0.5) / height - 0.5  # -0.5 (top) .. 0.5 (bottom)
    u = (np.arange(width)[None, :] + 0.5) / width - 0.5
    if shape == "circle":
        inside = u**2 + v**2 <= 0.25
    elif shape == "square":
        inside = np.ones((height, width), dtype=bool)
    elif shape == "triangle":
        inside = np.abs(u) <= (v + 0.5) / 2
    elif shape == "diamond":
        inside = np.abs(u) + np.abs(v) <= 0.5
    elif shape == "cross":
        inside = (np.abs(u) <= 1 / 6) | (np.abs(v) <= 1 / 6)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(FILL_RATIOS)}")
    return np.broadcast_to(inside, (height, width))


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def colour_features(pixels: np.ndarray, chroma_weight: float) -> np.ndarray:
    """RGB ``(..., 3)`` -> BT.601 ``(Y, w Cb, w Cr)`` float32, ``w = chroma_weight``.

    Euclidean distance in this space is the detector's colour distance. H.264 in yuv420p keeps
    brightness per pixel but colour per 2x2 block, so a shape's edge pixels keep the shape's
    brightness and lose part of its colour; weighting the colour down keeps them in the shape.
    """
    ycc = np.asarray(pixels, dtype=np.float32) @ _YCBCR.T
    return ycc * np.array([1.0, chroma_weight, chroma_weight], dtype=np.float32)


class ToyColourDetector:
    """Boxes of coloured shapes named by a prompt, found from pixels alone (see the module docstring).

    Args:
        config: thresholds; ``None``: :class:`ToyDetectorConfig` defaults (tuned on the toy world).
    """

    def __init__(self, config: ToyDetectorConfig | None = None) -> None:
        self.config = config or ToyDetectorConfig()
        # templates by (height, width): the components of a clip share few sizes
        self._templates: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def shape_scores(self, mask: np.ndarray) -> dict[str, float]:
        """IoU of a component's mask (cropped to its box) with every shape's template."""
        key = (int(mask.shape[0]), int(mask.shape[1]))
        templates = self._templates.get(key)
        if templates is None:
            if len(self._templates) >= _TEMPLATE_CACHE_LIMIT:
                self._templates.clear()
            templates = {s: shape_template(s, *key) for s in FILL_RATIOS}
            self._templates[key] = templates
        return {s: _mask_iou(mask, t) for s, t in templates.items()}

    def _shape_term(self, mask: np.ndarray, shape: str | None) -> float:
        scores = self.shape_scores(mask)
        if shape is None:
            return max(scores.values())
        margin = max(v for s, v in scores.items() if s != shape) - scores[shape]
        return scores[shape] * math.exp(-self.config.shape_sharpness * max(0.0, margin))

    def _score(self, mask: np.ndarray, dist: np.ndarray, box: np.ndarray, prompt: ToyPrompt) -> float:
        """Purity x shape x size of one component (``dist``: its pixels' colour distances)."""
        cfg = self.config
        score = float(np.mean(np.exp(-(dist**2) / (2 * cfg.purity_sigma**2))))
        score *= self._shape_term(mask, prompt.shape)
        if prompt.size is not None:
            side = math.sqrt((box[2] - box[0]) * (box[3] - box[1]))
            excess = (side - cfg.size_split_px) * (1 if prompt.size == "big" else -1)
            agree = min(1.0, max(0.0, excess / cfg.size_ramp_px + 0.5))
            score *= cfg.size_penalty + (1 - cfg.size_penalty) * agree
        return score

    def _chunk(
        self,
        frames: np.ndarray,
        prompt: ToyPrompt,
        palette: np.ndarray,
        wanted: Sequence[int],
        scale: tuple[float, float],
    ) -> list[tuple[list[np.ndarray], list[float]]]:
        """``(boxes, scores)`` of every frame of a chunk, unsorted."""
        cfg = self.config
        features = colour_features(frames, cfg.chroma_weight)  # (T, H, W, 3)
        # |f - p|^2 = |f|^2 - 2 f.p + |p|^2: one matrix product instead of a (T, H, W, K, 3) array
        dist2 = features @ (-2.0 * palette.T)
        dist2 += (features**2).sum(-1, keepdims=True)
        dist2 += (palette**2).sum(-1)
        nearest = dist2.argmin(-1)
        close = np.take_along_axis(dist2, nearest[..., None], -1)[..., 0] <= cfg.colour_distance**2
        # 2-D connectivity inside each frame, none across frames: one label call per colour
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = ndimage.generate_binary_structure(2, cfg.connectivity)
        max_area = cfg.max_area_fraction * frames.shape[1] * frames.shape[2]
        found: list[tuple[list[np.ndarray], list[float]]] = [([], []) for _ in range(frames.shape[0])]
        for k in wanted:
            labels, _ = ndimage.label(close & (nearest == k), structure)
            for index, window in enumerate(ndimage.find_objects(labels), start=1):
                if window is None:
                    continue
                mask = labels[window][0] == index
                area = int(np.count_nonzero(mask))
                if area < cfg.min_area or area > max_area:
                    continue
                t, ys, xs = window
                box = np.array([xs.start, ys.start, xs.stop, ys.stop], dtype=np.float64)
                box *= [scale[0], scale[1], scale[0], scale[1]]
                dist = np.sqrt(np.maximum(dist2[window][0][mask, k], 0.0))  # rounding can dip below 0
                score = self._score(mask, dist, box, prompt)
                if score >= cfg.min_score:
                    found[t.start][0].append(box)
                    found[t.start][1].append(score)
        return found

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
            text: the prompt, e.g. ``"big red circle"``.
            size: ``(height, width)`` the boxes are expressed in, normally the native frame size
                when ``frames`` were resized; ``None``: the frames' own size.

        Returns:
            ``T`` :class:`FrameDetections`, pixel ``xyxy`` boxes inside the frame, best score
            first; every label is the understood part of the prompt. A prompt with neither a
            colour nor a shape word gives no boxes.
        """
        frames = np.asarray(frames)
        ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        if ids.shape[0] != frames.shape[0]:
            raise ValueError(f"{frames.shape[0]} frames but {ids.shape[0]} frame ids")
        prompt = parse_prompt(text, self.config.palette)
        if prompt.colour is None and prompt.shape is None:
            return [FrameDetections(int(i)) for i in ids]
        colours = dict(self.config.palette)
        if prompt.colour is not None and prompt.colour not in colours:
            # a basic colour term the palette lacks competes with the palette for the pixels
            colours[prompt.colour] = COLOUR_RGB[prompt.colour]
        names = list(colours)
        palette = colour_features(np.array([colours[n] for n in names]), self.config.chroma_weight)
        wanted = [names.index(prompt.colour)] if prompt.colour is not None else range(len(names))
        height, width = size if size is not None else frames.shape[1:3]
        scale = (width / frames.shape[2], height / frames.shape[1])
        # bound the (T, H, W, K) distance array to ~4M values
        step = max(1, _CHUNK_VALUES // max(1, frames.shape[1] * frames.shape[2] * len(names)))
        results = []
        for start in range(0, frames.shape[0], step):
            found = self._chunk(frames[start : start + step], prompt, palette, wanted, scale)
            for fid, (boxes, scores) in zip(ids[start : start + step], found, strict=True):
                order = np.argsort(-np.asarray(scores), kind="stable")  # best first
                results.append(
                    FrameDetections(
                        int(fid),
                        np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[order],
                        np.asarray(scores, dtype=np.float64)[order],
                        [prompt.label] * len(order),
                    )
                )
        return results


__all__ = [
    "FILL_RATIOS",
    "SIZE_WORDS",
    "ToyColourDetector",
    "ToyDetectorConfig",
    "ToyPrompt",
    "colour_features",
    "parse_prompt",
    "shape_template",
]

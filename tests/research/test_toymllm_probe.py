"""Linear probes of the toy MLLM's visual features: patch selection, the probe itself, the readout."""

from __future__ import annotations

import numpy as np
import torch

from research.probe import box_patches, linear_probe, object_features
from zsgrounding.toy.mllm.config import ToyPretrainConfig
from zsgrounding.toy.mllm.data import build_bank
from zsgrounding.toy.mllm.stages import to_pixels, tower_hidden
from zsgrounding.toy.mllm.tokenizer import build_tokenizer
from zsgrounding.toy.mllm.train import build_model
from zsgrounding.toy.world import ToyWorldConfig


def test_box_patches_pick_the_patches_whose_centres_are_inside() -> None:
    # A 128 x 96 frame on a 4 x 4 grid: patch centres at x = 16, 48, 80, 112 and y = 12, 36, 60, 84.
    mask = box_patches(np.array([40.0, 30.0, 90.0, 65.0]), 128, 96, 4).reshape(4, 4)
    expected = np.zeros((4, 4), dtype=bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(mask, expected)
    # A box between centres falls back to the patch holding its centre.
    tiny = box_patches(np.array([0.0, 0.0, 10.0, 8.0]), 128, 96, 4).reshape(4, 4)
    assert tiny.sum() == 1 and tiny[0, 0]


def test_linear_probe_reads_a_linear_label_and_not_noise() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(600, 16, generator=generator)
    labels = np.where(features[:, 3].numpy() > 0, "a", "b")
    train = np.arange(600) < 400
    assert linear_probe(features, labels, train) > 0.9
    shuffled = np.random.default_rng(0).permutation(labels)
    assert 0.35 < linear_probe(features, shuffled, train) < 0.65


def test_object_features_average_the_tower_over_each_objects_patches() -> None:
    config = ToyPretrainConfig.quick()
    world = ToyWorldConfig()
    model = build_model(config, build_tokenizer())
    bank = build_bank(world, 0, 3, 2, config.model.image_size, progress=False)
    data = object_features(model, bank, world)
    centred = [
        (clip, pick, obj)
        for clip in range(3)
        for pick, fid in enumerate(bank.frame_ids[clip].tolist())
        for obj in bank.objects[clip]
        if obj.visible[0] <= fid < obj.visible[1]
        and 0 <= (obj.boxes[fid - obj.visible[0]][[0, 2]].mean() / world.width) < 1
        and 0 <= (obj.boxes[fid - obj.visible[0]][[1, 3]].mean() / world.height) < 1
    ]
    assert data.tower.shape == (len(centred), config.model.vision_hidden)
    assert data.projected.shape == (len(centred), config.model.text_hidden)
    assert list(data.labels["shape"]) == [obj.shape for _, _, obj in centred]
    clip, pick, obj = centred[-1]
    fid = int(bank.frame_ids[clip, pick])
    with torch.no_grad():
        hidden = tower_hidden(model, to_pixels(bank.frames[clip]))[pick]
    mask = box_patches(obj.boxes[fid - obj.visible[0]], world.width, world.height, config.model.patches)
    torch.testing.assert_close(data.tower[-1], hidden[torch.from_numpy(mask)].mean(0))

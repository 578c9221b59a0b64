import pytest
import torch
import torch.nn as nn
import torch_pruning as tp

import cdprune
from cdprune import models
from cdprune.complexity import CONV_TYPES

from nets import USER_NETS


def test_vgg16_reference_totals():
    prof = cdprune.profile(models.create("vgg16", num_classes=10), (3, 32, 32))
    assert prof.totals.params == 14_724_042
    assert prof.totals.flops == pytest.approx(313.2e6, rel=0.005)


def test_conv_formulas_by_hand():
    net = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True), nn.Conv2d(6, 6, 3, padding=1, groups=3))
    prof = cdprune.profile(net, (4, 10, 10))
    first, second = prof.layers
    assert first.output_shape == (6, 5, 5)
    assert first.params == 6 * 4 * 9 + 6
    assert first.flops == 6 * 4 * 9 * 25
    assert first.memory_bytes == 6 * 25 * 4
    assert second.flops == 6 * (6 // 3) * 9 * 25  # grouped: C_in / g
    assert sum(layer.flops_share for layer in prof.layers) == pytest.approx(1.0)
    assert prof.totals.params == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenetv2", "alexnet"])
def test_totals_match_torch_pruning_counter(name):
    net = models.create(name)
    prof = cdprune.profile(net, (3, 32, 32))
    _, params, layer_flops, _ = tp.utils.count_ops_and_params(net, torch.zeros(1, 3, 32, 32), layer_wise=True)
    assert prof.totals.params == params
    # torch-pruning also counts BN, pooling, activations and bias adds;
    # docs/design.md, "Complexity", counts conv and linear MACs only.
    def bias_adds(layer):
        return layer.out_channels * layer.positions if net.get_submodule(layer.name).bias is not None else 0

    for layer in prof.layers:
        assert layer.flops == layer_flops[net.get_submodule(layer.name)] - bias_adds(layer)
    theirs = sum(f for m, f in layer_flops.items() if isinstance(m, CONV_TYPES + (nn.Linear,)) and f)
    assert prof.totals.flops == theirs - sum(bias_adds(layer) for layer in prof.layers)


def test_resnet50_size_is_as_documented():
    prof = cdprune.profile(models.create("resnet50"), (3, 32, 32))
    assert prof.totals.params == pytest.approx(23.5e6, rel=0.01)
    assert prof.totals.flops == pytest.approx(1.30e9, rel=0.01)


@pytest.mark.parametrize("name", sorted(USER_NETS))
def test_any_module_profiles(name):
    prof = cdprune.profile(USER_NETS[name](), (3, 16, 16))
    assert prof.layers and prof.totals.flops > 0
    assert sum(layer.memory_share for layer in prof.layers) == pytest.approx(1.0)


def test_profile_leaves_training_mode_alone():
    net = models.create("alexnet")
    net.train()
    cdprune.profile(net, (3, 32, 32))
    assert net.training


def test_rejected_input_shape_is_a_user_error():
    with pytest.raises(cdprune.CdpruneError, match="rejects input shape"):
        cdprune.profile(models.create("vgg16"), (5, 32, 32))


def test_fashion_mnist_shape_works_for_every_model():
    for name in models.names():
        prof = cdprune.profile(models.create(name, num_classes=10, in_channels=1), (1, 28, 28))
        assert prof.layers[0].in_channels == 1


def test_alexnet_width_multiplier_by_hand():
    # width 0.25: convs 16-48-96-64-64, FCs 256 wide; 28×28 input, pooled to 14, 7, 4 (ceil), then 2×2.
    net = models.create("alexnet", num_classes=10, in_channels=1, model_args={"width": 0.25})
    prof = cdprune.profile(net, (1, 28, 28))
    assert [layer.out_channels for layer in prof.layers] == [16, 48, 96, 64, 64, 256, 256, 10]
    convs = 16 * 9 + 48 * 16 * 9 + 96 * 48 * 9 + 64 * 96 * 9 + 64 * 64 * 9
    bn = 2 * (16 + 48 + 96 + 64 + 64)
    fcs = (64 * 4 * 256 + 256) + (256 * 256 + 256) + (256 * 10 + 10)
    assert prof.totals.params == convs + bn + fcs == 275_418
    macs = 16 * 9 * 784 + 48 * 16 * 9 * 196 + (96 * 48 + 64 * 96 + 64 * 64) * 9 * 49 + 64 * 4 * 256 + 256 * 256 + 2560
    assert prof.totals.flops == macs == 8_149_248
    with pytest.raises(cdprune.CdpruneError, match="width > 0"):
        models.create("alexnet", model_args={"width": 0})

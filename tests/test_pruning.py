import json

import numpy as np
import pytest
import torch

import cdprune
from cdprune import models
from cdprune.pruning import PruningPlan

from nets import USER_NETS, FullyConv, LinearOnly

SHAPE = (3, 32, 32)


def _removed_fraction(units):
    return sum(u.channels - len(u.kept) for u in units) / sum(u.channels for u in units)


def _check_pruned(model, plan, shape):
    """The pruned module is smaller, its profile equals the plan's numbers, and it trains."""
    after = cdprune.profile(model, shape).totals
    assert after == plan.after
    model.train()
    out = model(torch.randn(2, *shape))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("mode", ["pa", "fa", "ma"])
@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenetv2", "alexnet"])
def test_every_model_prunes_in_every_mode(name, mode):
    plan = cdprune.make_plan(models.create(name), SHAPE, mode, 0.3, seed=1)
    metric = cdprune.MODES[mode].metric
    assert plan.reduction[metric] >= 0.3
    fresh = models.create(name)
    dense_params = sum(p.numel() for p in fresh.parameters())
    pruned = cdprune.apply_plan(fresh, plan)
    assert sum(p.numel() for p in pruned.parameters()) < dense_params
    _check_pruned(pruned, plan, SHAPE)


@pytest.mark.parametrize("mode", ["pa", "fa", "ma"])
@pytest.mark.parametrize("name", sorted(USER_NETS))
def test_user_modules_prune_in_every_mode(name, mode):
    shape = (3, 16, 16)
    plan = cdprune.make_plan(USER_NETS[name](), shape, mode, 0.4, seed=3)
    assert plan.model is None and plan.reduction[cdprune.MODES[mode].metric] >= 0.4
    _check_pruned(cdprune.apply_plan(USER_NETS[name](), plan), plan, shape)


def test_coupled_channels_form_one_unit():
    residual = cdprune.make_plan(USER_NETS["residual"](), (3, 16, 16), "fa", 0.2)
    # stem conv and the body's last conv feed the same add: one unit holding both.
    assert [u.convs for u in residual.units] == [("stem.0", "body.3"), ("body.0",)]
    separable = cdprune.make_plan(USER_NETS["separable"](), (3, 16, 16), "fa", 0.2)
    assert ("features.3", "features.6") in [u.convs for u in separable.units]


def test_output_shaping_convs_are_not_units():
    with pytest.raises(cdprune.CdpruneError, match="no prunable conv"):
        cdprune.make_plan(FullyConv(), (3, 8, 8), "fa", 0.5)
    with pytest.raises(cdprune.CdpruneError, match="no prunable conv"):
        cdprune.make_plan(LinearOnly(), (3, 8, 8), "fa", 0.5)


def test_mode_targets_on_vgg16():
    net = models.create("vgg16")
    assert cdprune.make_plan(net, SHAPE, "fa", 0.5).reduction["flops"] >= 0.5
    assert cdprune.make_plan(net, SHAPE, "pa", 0.5).reduction["params"] >= 0.5
    assert cdprune.make_plan(net, SHAPE, "ma", 0.5).reduction["memory"] >= 0.5


def test_modes_prune_where_their_complexity_sits():
    net = models.create("vgg16")
    first4 = {m: [] for m in ("pa", "ma")}
    last6 = {m: [] for m in ("pa", "ma")}
    for mode in ("pa", "ma"):
        for seed in range(5):
            units = cdprune.make_plan(net, SHAPE, mode, 0.5, seed=seed).units
            first4[mode].append(_removed_fraction(units[:4]))
            last6[mode].append(_removed_fraction(units[-6:]))
    # Early layers hold the large feature maps, late layers the parameters.
    assert np.mean(first4["ma"]) > np.mean(first4["pa"])
    assert np.mean(last6["pa"]) > np.mean(last6["ma"])


def test_same_seed_same_bytes_and_different_seeds_differ(tmp_path):
    net = models.create("vgg16")
    a = cdprune.make_plan(net, SHAPE, "fa", 0.5, seed=7).save(tmp_path / "a.json").read_bytes()
    b = cdprune.make_plan(models.create("vgg16"), SHAPE, "fa", 0.5, seed=7).save(tmp_path / "b.json").read_bytes()
    c = cdprune.make_plan(net, SHAPE, "fa", 0.5, seed=8)
    assert a == b
    assert c.to_json().encode() != a


def test_plan_round_trips_and_rebuilds_the_same_architecture(tmp_path):
    plan = cdprune.make_plan(models.create("mobilenetv2"), SHAPE, "ma", 0.4, seed=2)
    loaded = PruningPlan.load(plan.save(tmp_path / "plan.json"))
    assert loaded == plan
    one = cdprune.apply_plan(models.create("mobilenetv2"), loaded)
    two = cdprune.apply_plan(models.create("mobilenetv2"), plan)
    assert {k: v.shape for k, v in one.state_dict().items()} == {k: v.shape for k, v in two.state_dict().items()}


def test_kept_weights_are_the_planned_channels():
    net = models.create("vgg16")
    plan = cdprune.make_plan(net, SHAPE, "fa", 0.3, seed=0)
    original = net.features[0].weight.detach().clone()
    cdprune.apply_plan(net, plan)
    kept = list(plan.units[0].kept)
    assert torch.equal(net.features[0].weight, original[kept])


def test_round_to_keeps_multiples():
    plan = cdprune.make_plan(models.create("vgg16"), SHAPE, "fa", 0.5, round_to=8)
    assert all(len(u.kept) % 8 == 0 for u in plan.units)


def test_floor_is_respected():
    plan = cdprune.make_plan(models.create("alexnet"), SHAPE, "fa", 0.8, floor=0.25)
    assert all(len(u.kept) >= np.ceil(0.25 * u.channels) for u in plan.units)


def test_target_beyond_reach_states_the_largest_reduction():
    with pytest.raises(cdprune.CdpruneError, match=r"at most 0\.\d{3}"):
        cdprune.make_plan(models.create("alexnet"), SHAPE, "pa", 0.95)


@pytest.mark.parametrize("target", [0, 1, -0.2, 1.5])
def test_target_outside_open_interval(target):
    with pytest.raises(cdprune.CdpruneError, match="outside"):
        cdprune.make_plan(models.create("alexnet"), SHAPE, "fa", target)


def test_unknown_mode_and_model():
    with pytest.raises(cdprune.CdpruneError, match="unknown mode 'xa'"):
        cdprune.make_plan(models.create("alexnet"), SHAPE, "xa", 0.5)
    with pytest.raises(cdprune.CdpruneError, match="unknown model 'vgg99'"):
        models.create("vgg99")


def test_plan_for_another_architecture_is_refused():
    plan = cdprune.make_plan(models.create("vgg16"), SHAPE, "fa", 0.5)
    with pytest.raises(cdprune.CdpruneError, match="num_classes=10, this model has num_classes=100.*--num-classes"):
        cdprune.apply_plan(models.create("vgg16", num_classes=100), plan)
    with pytest.raises(cdprune.CdpruneError, match="made for vgg16, not alexnet"):
        cdprune.apply_plan(models.create("alexnet"), plan)
    bare = models.create("vgg16", num_classes=100)
    del bare.cdprune_spec  # a model built without the registry: only its architecture tells
    with pytest.raises(cdprune.CdpruneError, match="another architecture.*--num-classes"):
        cdprune.apply_plan(bare, plan)


def test_tampered_and_unreadable_plans_are_refused(tmp_path):
    path = cdprune.make_plan(models.create("alexnet"), SHAPE, "fa", 0.5).save(tmp_path / "plan.json")
    data = json.loads(path.read_text())
    data["units"][0]["kept"] = data["units"][0]["kept"][:-1]
    (tmp_path / "edited.json").write_text(json.dumps(data))
    with pytest.raises(cdprune.CdpruneError, match="edited or damaged"):
        PruningPlan.load(tmp_path / "edited.json")
    (tmp_path / "cut.json").write_text(path.read_text()[:100])
    with pytest.raises(cdprune.CdpruneError, match="not valid JSON"):
        PruningPlan.load(tmp_path / "cut.json")
    with pytest.raises(cdprune.CdpruneError, match="not found"):
        PruningPlan.load(tmp_path / "missing.json")

"""cdprune — complexity-driven structured pruning of CNNs for edge devices.

    >>> import cdprune
    >>> net = cdprune.models.create("vgg16", num_classes=10)
    >>> cdprune.profile(net, (3, 32, 32)).totals
    >>> p = cdprune.make_plan(net, (3, 32, 32), mode="fa", target=0.5, seed=0)
    >>> small = cdprune.apply_plan(cdprune.models.create("vgg16"), p)
"""
from . import models
from .complexity import LayerComplexity, Profile, Totals, profile
from .errors import CdpruneError
from .pruning import MODES, PruningPlan, apply_plan, make_plan

__version__ = "0.1.0"
__all__ = ["models", "profile", "make_plan", "apply_plan", "PruningPlan", "Profile", "LayerComplexity", "Totals",
           "CdpruneError", "MODES"]

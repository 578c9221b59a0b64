import pytest

import cdprune
from cdprune import models
from cdprune.runs import train_run
from support import TINY_SETTINGS


@pytest.fixture(scope="session")
def pruned_run(tmp_path_factory):
    """alexnet pruned FA-0.5, trained for one epoch on synthetic data (shared by the bench and export tests)."""
    out = tmp_path_factory.mktemp("alexnet-fa0.5")
    plan = cdprune.make_plan(models.create("alexnet"), (3, 32, 32), "fa", 0.5)
    train_run(out, TINY_SETTINGS, plan, progress=False)
    return out

import pytest

import cdprune
from cdprune import models
from cdprune.runs import RunSettings, train_run


@pytest.fixture(scope="session")
def pruned_run(tmp_path_factory):
    """alexnet pruned FA-0.5, trained for one epoch on synthetic data (shared by the bench and export tests)."""
    out = tmp_path_factory.mktemp("alexnet-fa0.5")
    plan = cdprune.make_plan(models.create("alexnet"), (3, 32, 32), "fa", 0.5)
    settings = RunSettings("alexnet", "synthetic", epochs=1, train_subset=64, test_subset=32, batch_size=32)
    train_run(out, settings, plan, progress=False)
    return out

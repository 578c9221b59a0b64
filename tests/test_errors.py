"""User errors carry their parts as fields; the CLI renders them; registries warn on a second name."""
import warnings

import pytest

from cdprune import models
from cdprune.cli import render_error
from cdprune.errors import CdpruneError
from cdprune.methods import METHODS, register_method
from cdprune.pruning.sampler import MODES, register_mode

from support import run_cli


def test_error_fields_make_the_one_line_message():
    exc = CdpruneError("plan made for 10 classes, the data has 4", "plan again for this data", option="num_classes")
    assert (exc.problem, exc.hint, exc.option) == ("plan made for 10 classes, the data has 4",
                                                   "plan again for this data", "num_classes")
    assert str(exc) == "plan made for 10 classes, the data has 4: plan again for this data"
    assert str(CdpruneError("no hint")) == "no hint" and CdpruneError("no hint").hint is None


def test_cli_renders_the_option_as_the_commands_flag():
    exc = CdpruneError("plan made for 10 classes, the data has 4", "plan again for this data", option="num_classes")
    assert render_error(exc, {"--num-classes", "--out"}).endswith("plan again for this data (--num-classes)")
    assert render_error(exc, {"--out"}) == str(exc)  # a command without that flag shows the message alone


def test_cli_names_no_flag_for_a_positional_argument(capsys, tmp_path):
    code, _, err = run_cli(capsys, "profile", f"{tmp_path / 'missing.py'}:Net")
    assert code == 2 and "model file" in err and "check the path before the colon" in err
    assert "(--model" not in err  # profile takes the model as its argument, not as --model
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("table,register,entry", [
    (MODES, register_mode, lambda: MODES["fa"]),
    (METHODS, register_method, lambda: METHODS["dense"]),
])
def test_registering_a_name_twice_warns(table, register, entry):
    original = entry()
    clone = type(original)(**{**original.__dict__})
    try:
        with pytest.warns(UserWarning, match="registered twice"):
            register(clone)
    finally:
        table[original.name] = original


def test_registering_a_model_twice_warns():
    original = models._REGISTRY["alexnet"]
    try:
        with pytest.warns(UserWarning, match="model 'alexnet' is registered twice"):
            models.register("alexnet")(lambda **kwargs: None)
    finally:
        models._REGISTRY["alexnet"] = original
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        models.register("alexnet")(original)  # the same entry again is no change, and no warning

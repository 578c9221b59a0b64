"""The directory guard: what a run folder already holds decides whether a run may write there
(docs/design.md, "Run directory")."""
from __future__ import annotations

from pathlib import Path

from ..errors import CdpruneError
from ..storage import (
    read_checkpoint_meta,
)
from ..train import CHECKPOINT_NAME
from .loading import read_settings
from .records import METRICS_FILE, PLAN_FILE, RunSettings


def guard_directory(out: Path, settings: RunSettings, plan_digest: str | None, resume: bool) -> str:
    """What `out` holds, refusing every case that must not be written: "finished" (reuse it), "interrupted"
    (resume it) or "new" (train from scratch). Reads only."""
    if out.exists() and not out.is_dir():
        raise CdpruneError(f"{out} is a file, not a run directory: choose another output folder (--out)")
    finished, started = (out / METRICS_FILE).exists(), (out / CHECKPOINT_NAME).exists()
    if not finished and not started:
        # Nothing trained yet: settings written by a start that never finished an epoch are replaced.
        return "new"
    if not resume:
        what = "a finished run: choose another output folder (--out), or delete it to train again" if finished else \
            (f"an interrupted run: resume it (--resume), or delete {out / CHECKPOINT_NAME} to start it over")
        raise CdpruneError(f"{out} already holds {what}")
    recorded = read_settings(out)
    if recorded is not None:
        old, old_digest = recorded
        if old.comparable() != settings.comparable():
            now = settings.comparable()
            diff = ", ".join(f"{k}={v!r}, now {now[k]!r}" for k, v in old.comparable().items() if now[k] != v)
            raise CdpruneError(f"{out} was started with other settings ({diff}): use them to resume, or choose "
                               "another output folder (--out)")
        if old_digest != plan_digest:
            was = "dense (no plan)" if old_digest is None else f"the plan {out / PLAN_FILE}"
            now = "no plan" if plan_digest is None else "another plan"
            raise CdpruneError(f"{out} was started {'as ' if old_digest is None else 'with '}{was}, but {now} was "
                               "given: pass the same plan (--plan) to resume, or choose another output folder (--out)")
    return "finished" if finished else "interrupted"


def check_checkpoint(out: Path, settings: RunSettings, train_size: int) -> None:
    """A checkpoint to resume must be readable and made by these settings; checked before anything is written."""
    path = out / CHECKPOINT_NAME
    if not path.exists():
        return
    try:
        old = read_checkpoint_meta(path).get("run", {})
    except CdpruneError:
        raise CdpruneError(f"checkpoint {path} is damaged: delete it to start this run over "
                           "(the finished epochs in it are lost)") from None
    expected = {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.effective_lr,
                "seed": settings.seed, "train_size": train_size, "num_workers": settings.num_workers,
                "warmup": settings.warmup, "label_smoothing": settings.label_smoothing, "autocast": settings.autocast}
    # A checkpoint from before the warm-up and label smoothing lacks them: it trained on another schedule. One
    # without autocast trained in fp32, as a run without the setting does.
    diff = [k for k in expected if (k in old or k in ("warmup", "label_smoothing", "autocast"))
            and old.get(k) != expected[k]]
    if diff:
        was = ", ".join(f"{k}={old.get(k)!r} (now {expected[k]!r})" for k in diff)
        raise CdpruneError(f"checkpoint {path} was made with {was}: use those settings to resume, or delete it to "
                           "start this run over")



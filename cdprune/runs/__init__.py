"""Train → measure: one training run and its run directory (docs/design.md, "Run directory").

A run directory holds

    run.json            the settings, written first (a resumed run must match them)
    plan.json           the pruning plan (absent for a dense run)
    checkpoint.safetensors, history.csv   while training, refreshed every epoch
    model.safetensors   the trained weights (no pickle)
    metrics.json        accuracy, params, FLOPs, memory, latency, energy, wall time

One module per concern: `records` (what a run records and its file names), `naming` (run names),
`guard` (what a folder already holds decides whether a run may write there), `training` (train
and measure one run), `loading` (read a finished run back, rebuild its model, re-evaluate it).
"""
from .guard import check_checkpoint, guard_directory
from .loading import (build_model, check_source, eval_run, load_run, read_metrics, read_settings,
                      record_budget_check, run_data, trusted_reference)
from .naming import plan_run_name, run_name
from .records import (METRICS_FILE, PLAN_FILE, SETTINGS_FILE, TRAINING_PASSES, WEIGHTS_FILE, EvalResult, RunMetrics,
                      RunSettings, planner_settings)
from .training import train_run

__all__ = ["METRICS_FILE", "PLAN_FILE", "SETTINGS_FILE", "TRAINING_PASSES", "WEIGHTS_FILE", "EvalResult", "RunMetrics",
           "RunSettings", "build_model", "check_checkpoint", "check_source", "eval_run", "guard_directory", "load_run",
           "plan_run_name", "planner_settings", "read_metrics", "read_settings", "record_budget_check", "run_data", "run_name",
           "train_run", "trusted_reference"]

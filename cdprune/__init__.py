"""cdprune — complexity-driven structured pruning of CNNs for edge devices.

The public API; the `cdprune` command uses nothing else (docs/design.md, "Layout").

    >>> import cdprune
    >>> net = cdprune.models.create("vgg16", num_classes=10)
    >>> cdprune.profile(net, (3, 32, 32)).totals
    >>> plan = cdprune.make_plan(net, (3, 32, 32), mode="fa", target=0.5, seed=0)
    >>> small = cdprune.apply_plan(cdprune.models.create("vgg16"), plan)
"""
from . import data, distributed, models, report, tasks
from .backends import BACKENDS, Resources
from .complexity import LayerComplexity, Profile, Totals, parse_shape, profile
from .data import AUGMENTATIONS, DATASETS
from .deploy import (FORMATS, RUNTIMES, BenchResult, ExportFormat, ExportResult, OnnxEvalResult, Runtime,
                     SamplesResult, bench, bench_runtimes, file_latency, eval_onnx, export_formats, export_run, register_format,
                     register_runtime, write_samples)
from .errors import CdpruneError, CheckFailed, UnreachableTarget
from .measure import DEFAULT_ENERGY_MODEL, EnergyModel
from .measure.layer_latency import LatencyTable, build_latency_table
from .measure.pack import write_latency_pack
from .measure.runtimes import table_runtimes
from .experiment import DEFAULT_JOB, CompareResult, RunComparison, SweepResult, compare, main_job, sweep
from .methods import DEFAULT_MARGIN, METHODS, PRECISIONS, Budget, fit_plan, latency_margin
from .deploy.budget import BudgetCheck, BudgetRow
from .metrics import METRICS, Metric, register_metric
from .records import VERSION
from .pruning import MODES, PruningPlan, UnitsReport, apply_plan, make_plan, parse_budget, prunable_units
from .pruning.baselines import half_width_copy
from .pruning.sampler import DEFAULT_ROUND_TO, PlannerConfig
from .runs import EvalResult, RunMetrics, RunSettings, eval_run, load_run, train_run
from .tasks import TASKS, Task
from .train import TrainingInterrupted

__version__ = VERSION
__all__ = ["data", "distributed", "models", "report", "tasks", "TASKS", "Task", "UnitsReport", "prunable_units",
           "BACKENDS", "Resources", "LayerComplexity", "Profile",
           "Totals", "parse_shape", "profile", "AUGMENTATIONS", "DATASETS", "FORMATS", "RUNTIMES", "BenchResult",
           "ExportResult", "OnnxEvalResult", "SamplesResult", "bench", "file_latency", "eval_onnx", "export_run", "write_samples", "ExportFormat", "export_formats",
           "register_format", "Runtime", "register_runtime", "bench_runtimes", "table_runtimes",
           "DEFAULT_ENERGY_MODEL", "EnergyModel", "CdpruneError", "CheckFailed", "UnreachableTarget", "LatencyTable",
           "build_latency_table", "write_latency_pack", "half_width_copy", "DEFAULT_ROUND_TO", "PlannerConfig",
           "METRICS", "Metric", "register_metric",
           "DEFAULT_JOB", "CompareResult", "RunComparison", "SweepResult",
           "compare", "main_job", "sweep", "METHODS", "PRECISIONS", "DEFAULT_MARGIN", "Budget", "fit_plan", "latency_margin", "BudgetCheck", "BudgetRow",
           "MODES", "PruningPlan", "apply_plan", "make_plan",
           "parse_budget", "EvalResult", "RunMetrics", "RunSettings", "eval_run", "load_run", "train_run",
           "TrainingInterrupted"]

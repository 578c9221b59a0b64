"""Human-readable text for every result: the library returns records, these turn them into what the CLI prints.

Functions take the records by their attributes (duck typing), so this module sits low in
the house and imports only the complexity types, the formatting helpers and the tasks, which say
how their scores read.
"""
from __future__ import annotations

import shlex

from . import tasks
from .complexity import METRICS, Profile, Totals
from .formatting import human_bytes, human_count, human_energy, markdown_table, table
from .formatting import table as table_text  # where a parameter is called `table`
from .metrics import get_metric
from .pruning.pruning_plan import rounded_from
from .pruning.sampler import OVERSHOOT


def profile_table(profile: Profile) -> str:
    """Every layer's params, FLOPs and memory with their shares, and its estimated energy where the profile has it."""
    energy = profile.energy_mj is not None
    rows = []
    for layer in profile.layers:
        shape = "×".join(map(str, layer.output_shape))
        kernel = "×".join(map(str, layer.kernel_size)) or "-"
        kind = layer.kind
        if getattr(layer, "transposed", False):
            kind = "convT"
        elif layer.kind == "conv" and layer.groups > 1:
            kind = "dwconv" if layer.groups == layer.out_channels else f"gconv{layer.groups}"
        rows.append([layer.name, kind, f"{layer.in_channels}→{layer.out_channels}", kernel, shape,
                     human_count(layer.params), f"{layer.params_share:.1%}", human_count(layer.flops),
                     f"{layer.flops_share:.1%}", human_bytes(layer.memory_bytes), f"{layer.memory_share:.1%}"]
                    + ([human_energy(layer.energy_mj), f"{layer.energy_share:.1%}"] if energy else []))
    t = profile.totals
    rows.append(["total", "", "", "", "", human_count(t.params), "100%", human_count(t.flops), "100%",
                 human_bytes(t.memory_bytes), "100%"] + ([human_energy(profile.energy_mj), "100%"] if energy else []))
    header = ["layer", "type", "channels", "kernel", "output", "params", "share", "FLOPs", "share", "memory", "share"]
    header += ["energy (est.)", "share"] if energy else []
    lines = table(header, rows, right=set(range(5, len(header)))).splitlines()
    lines.insert(-1, lines[1])  # a rule above the totals line
    if energy:
        lines += ["", f"energy per inference: {profile.energy_model.describe()}"]
    return "\n".join(lines)


def reduction_table(before: Totals, after: Totals, latency: dict | None = None, energy: dict | None = None) -> str:
    """Totals before and after pruning; `latency` and `energy` add the estimated rows of plans that record them."""
    reduction = after.reduction_from(before)
    shown = [get_metric(m) for m in METRICS]
    rows = [[m.title, m.show(before.metric(m.name)), m.show(after.metric(m.name)), f"{reduction[m.name]:.1%}"]
            for m in shown]
    if latency:
        label = f"latency (est., {latency['runtime']})" if latency.get("runtime") else "latency (est.)"
        rows.append([label, f"{latency['before_ms']:.2f}ms", f"{latency['after_ms']:.2f}ms",
                     f"{1 - latency['after_ms'] / latency['before_ms']:.1%}"])
    if energy:
        rows.append(["energy (est.)", human_energy(energy["before_mj"]), human_energy(energy["after_mj"]),
                     f"{1 - energy['after_mj'] / energy['before_mj']:.1%}"])
    return table(["", "before", "after", "reduction"], rows)


def energy_label(kinds) -> str:
    """'(est.)' or '(measured)' for a column of energy figures; '(measured/est.)' when they are mixed."""
    kinds = set(kinds)
    return "(measured)" if kinds == {"measured"} else "(est.)" if kinds <= {"estimated"} else "(measured/est.)"


def score_label(score_name: str) -> str:
    """'test accuracy' or 'test PSNR': the row or column of a run's headline figure."""
    return tasks.by_score(score_name).score.label


def score_text(score_name: str, value: float | None) -> str:
    """A headline figure in its task's unit: accuracy as a percentage, PSNR in dB."""
    return tasks.by_score(score_name).score.text(value)


def score_delta(score_name: str, difference: float) -> str:
    return tasks.by_score(score_name).score.delta(difference)


def _score_rows(task) -> list[tuple]:
    """(label, record attribute, Score, shows differences) of the task's figures in a run table."""
    return ([(task.score.label, "score", task.score, True)]
            + [(s.label, s.key, s, True) for s in task.extra_scores]
            + [(label, attr, score, False) for label, attr, score in task.reference_rows])


# (label, RunMetrics attribute, formatter); ratios are pruned ÷ dense. The task's scores come first.
COMPARISON_ROWS = [
    ("params", "params", human_count),
    ("FLOPs (MACs)", "flops", human_count),
    ("memory (activations)", "memory_bytes", human_bytes),
    ("CPU latency, batch 1", "latency_ms", lambda v: f"{v:.2f} ms"),
    ("energy / inference", "energy_mj", lambda v: f"{v:.3f} mJ"),
    ("training wall time", "train_time_s", lambda v: f"{v:.0f} s"),
]


def comparison_rows(runs) -> tuple[list[str], list[list[str]]]:
    """Rows of the side-by-side table: one column per run, then each run's difference from the first (dense)
    for the task's scores and its ratio to it for the costs. The task says which scores it shows: accuracy;
    or PSNR, SSIM and the PSNR of the degraded input itself (what the network improves on)."""
    base = runs[0]
    header = [""] + [r.method for r in runs] + [f"{r.method} / {base.method}" for r in runs[1:]]
    rows = []
    for label, attr, score, differs in _score_rows(tasks.create(base.task)):
        values = [getattr(r, attr) for r in runs]
        diffs = [score.delta(v - values[0]) if differs and None not in (v, values[0]) else "-" for v in values[1:]]
        rows.append([label] + [score.text(v) for v in values] + diffs)
    for label, attr, fmt in COMPARISON_ROWS:
        values = [getattr(r, attr) for r in runs]
        ratios = [f"{v / values[0]:.2f}×" if values[0] else "-" for v in values[1:]]
        if attr == "energy_mj":  # runs record the estimate; the label says so rather than assume it
            label = f"{label} {energy_label(r.energy.get('kind', 'estimated') for r in runs)}"
        rows.append([label] + [fmt(v) for v in values] + ratios)
    return header, rows


def task_sentence(settings) -> str:
    """What the task adds to the Markdown reports about its scores ('' for classify)."""
    return settings.make_task().report_note()


def comparison_table(runs) -> str:
    header, rows = comparison_rows(runs)
    return table(header, rows)


def comparison_markdown(runs, settings) -> str:
    header, rows = comparison_rows(runs)
    base = runs[0]
    return "\n".join([
        f"# {base.model} on {base.data}: dense vs pruned",
        "",
        f"Both models trained from scratch with the same budget: {settings.epochs} epochs, "
        f"{base.train_size} training images, batch {settings.batch_size}, lr {settings.lr}, seed {settings.seed}; "
        f"tested on {base.test_size} images. Device: {base.device}. {task_sentence(settings)}".rstrip(),
        "",
        markdown_table(header, rows),
        "",
        f"FLOPs are multiply-accumulates per input; memory is the conv/linear output feature maps at float32. "
        f"Latency: median of batch-1 forward passes on this CPU ({_threads(base.latency.get('threads'))}). "
        f"Energy: {base.energy.get('source')}.",
        "",
    ])


def compare_rows(summaries) -> tuple[list[str], list[list[str]]]:
    """One row per method: the task's score mean ± std and its extra scores' means (PSNR and SSIM), resources
    and reductions, latency, total training cost."""
    task = tasks.by_score(summaries[0].score_name if summaries else tasks.CLASSIFY.score.name)
    scores = [task.score.label] + [s.label for s in task.extra_scores]
    sized = [get_metric(m) for m in METRICS]  # the metrics a run's reduction records
    header = ["method", "seeds", *scores, *(m.title for m in sized), *(f"Δ{m.title}" for m in sized),
              "CPU latency", "energy (est.)", "epochs", "train time (all stages)", "train FLOPs (all stages)"]
    rows = []
    for s in summaries:
        r = s.reduction
        shown = [task.score.spread(s.score_mean, s.score_std)]
        shown += [extra.text(getattr(s, f"{extra.key}_mean")) for extra in task.extra_scores]
        rows.append([s.method, str(s.seeds), *shown, *(m.show(getattr(s, m.run_field)) for m in sized),
                     *(f"-{r[m.name]:.1%}" for m in sized), f"{s.latency_ms:.2f} ms", f"{s.energy_mj:.3f} mJ",
                     _epochs(s), f"{s.train_time_s:.0f} s", human_count(s.train_flops)])
    return header, rows


def _epochs(summary) -> str:
    """A method's epochs: '10', or '8+4' for a dense stage and a fine-tune (means over seeds)."""
    shown = lambda value: f"{value:g}"
    return shown(summary.epochs) if not summary.pretrain_epochs else \
        f"{shown(summary.pretrain_epochs)}+{shown(summary.epochs)}"


def _budget_sentence(result, settings) -> str:
    budget = getattr(result, "train_budget", None)
    if not budget:
        return f"{settings.epochs} epochs (fine-tuning: half as many at a tenth of the LR)"
    return (f"every method trained for the FLOPs of {budget['dense_epochs']} dense epochs (epochs = ⌊N × dense FLOPs "
            "/ method FLOPs⌋; a ranking method's dense stage counts, its fine-tune at a tenth of the LR gets the rest)")


def compare_markdown(result, settings, train_size: int, test_size: int) -> str:
    """compare.md: the settings in a sentence, then the table."""
    header, rows = compare_rows(result.summaries)
    return "\n".join([
        f"# {settings.model} on {settings.data}: methods at a {result.target:g} {result.metric} reduction", "",
        f"{_budget_sentence(result, settings)}, {train_size} training "
        f"images, {test_size} test images, batch {settings.batch_size}, lr {settings.lr}; "
        f"{settings.make_task().score.name} is the mean ± "
        f"std over seeds. Training cost counts every stage (dense pre-training and fine-tuning for the ranking "
        f"methods); training FLOPs = 3 × MACs per image × images seen. {task_sentence(settings)}".rstrip(), "",
        markdown_table(header, rows), ""])


def compare_text(result, settings) -> str:
    """What `cdprune compare` prints."""
    return "\n".join([
        f"{settings.model} on {settings.data}: every method at a {result.target:g} {result.metric} reduction, "
        f"{result.seeds} seed(s), " + (f"the training FLOPs of {result.train_budget['dense_epochs']} dense epochs each"
                                       if result.train_budget else f"{result.epochs} epochs"),
        table(*compare_rows(result.summaries)), "",
        f"tables: {result.out}/compare.md, {result.out}/compare.csv, {result.out}/compare.json"])


def budget_value(metric: str, value: float) -> str:
    """A budget limit in its metric's unit (the metric table's `limit`): ms for latency, mJ for energy, bytes for
    memory, counts for params and FLOPs."""
    return get_metric(metric).limit(value)


def plan_text(plan, model_name: str, mode_title: str, plan_path) -> str:
    """What `cdprune prune` prints: the goal, the reduction and every unit's kept channels."""
    goal = f"target {plan.target:g}" if plan.target is not None else ""
    if plan.budget:
        goal += (" · " if goal else "") + "budget " + ", ".join(f"{m}≤{budget_value(m, v)}" for m, v in plan.budget.items())
    rows = [[u.name, str(len(u.convs)), str(u.channels), str(len(u.kept)), f"{1 - len(u.kept) / u.channels:.0%}"]
            for u in plan.units]
    lines = [f"{model_name} · mode {plan.mode} ({mode_title}) · {goal} · seed {plan.seed} · {plan.steps} draws",
             reduction_table(plan.before, plan.after, plan.latency, plan.energy), "",
             table(["unit", "convs", "channels", "kept", "removed"], rows)]
    if plan.narrow_units:
        lines.append(f"units narrower than {rounded_from(plan.round_to)} not rounded: {', '.join(plan.narrow_units)}")
    lines += _distance_to_target(plan)
    if plan.energy:
        lines += ["", f"energy per inference: {plan.energy_model.describe()}"]
    return "\n".join(lines + ["", f"plan written to {plan_path}"])


def _distance_to_target(plan) -> list[str]:
    """How far past its target the plan landed, and why, when that is more than a point."""
    reduction = plan.reduction.get(plan.target_metric)  # latency and energy are estimates, shown above
    if plan.target is None or reduction is None or reduction - plan.target <= 0.01:
        return []
    return [f"the plan removes {reduction:.1%} of the {plan.target_metric} for a target of {plan.target:.0%}, {100 * (reduction - plan.target):.1f} "
            f"points beyond it: a draw removes a whole step of one unit ({plan.step:.0%} of its channels, a multiple "
            f"of round_to {plan.round_to}, whole groups of a grouped conv), and a last step that would pass the target "
            f"by more than {OVERSHOOT:.0%} is replaced by the step that passes it least; --round-to 1 or a smaller "
            "--step gives finer steps"]


def _threads(count) -> str:
    return f"{count} thread{'' if count == 1 else 's'}"


def latency_table_text(table, model_name: str, path, model_flags: str = "") -> str:
    """What `cdprune latency-table` prints: each layer's time at full and half width, then the calibration, then
    the prune command that plans with the table (`model_flags`: the flags that built the model, shell-quoted)."""
    mid = 1  # the grid's 50 % column and row (FRACTIONS = 25, 50, 75, 100 %)
    rows = [[name, table.layers.get(name, ""), f"{grid[-1][-1]:.4f}", f"{grid[mid][mid]:.4f}"]
            for name, grid in table.grids.items()]
    return "\n".join([
        f"{model_name} · {table.describe()} · input {'×'.join(map(str, table.input_shape))} · batch 1",
        table_text(["layer", "timed as", "ms at 100 %", "ms at 50 %"], rows), "",
        f"dense network {table.network_ms:.3f} ms measured; layers alone {table.layer_sum_ms:.3f} ms "
        f"(calibration {table.calibration:.3f})",
        f"latency table written to {path}: plan with it anywhere, "
        f"cdprune prune {shlex.quote(model_name)}{model_flags} --mode la --latency-table {shlex.quote(str(path))}"])


def units_text(units) -> str:
    """What `cdprune prune --verbose` adds: the coupled channels that cannot be pruned, with the reasons."""
    if not units.excluded:
        return "every coupled channel set is a prunable unit"
    rows = [[e.name, str(e.channels), e.reason] for e in units.excluded]
    return "not prunable:\n" + table(["channels of", "channels", "reason"], rows)


def run_text(metrics) -> str:
    """What `cdprune train` prints: one finished run."""
    scores = [[label, score.text(getattr(metrics, attr))]
              for label, attr, score, _ in _score_rows(tasks.create(metrics.task))]
    return table(["", metrics.method], [
        *scores,
        ["params", human_count(metrics.params)], ["FLOPs", human_count(metrics.flops)],
        ["memory", human_bytes(metrics.memory_bytes)], ["CPU latency, batch 1", f"{metrics.latency_ms:.2f} ms"],
        [f"energy {energy_label([metrics.energy.get('kind', 'estimated')])}", f"{metrics.energy_mj:.3f} mJ"],
        ["training wall time", f"{metrics.train_time_s:.0f} s"]])


def eval_text(result) -> str:
    verdict = "matches the record" if result.matches else "DIFFERS from the record"
    task = tasks.by_score(result.score_name)

    def figures(prefix: str) -> str:
        return "".join(f", {s.name} {s.text(getattr(result, prefix + s.key))}" for s in task.extra_scores)

    return (f"{task.score.label} {task.score.text(result.score)}{figures('')} on {result.test_size} images "
            f"(recorded {task.score.text(result.recorded_score)}{figures('recorded_')}: {verdict})")


def main_job_text(result) -> str:
    """What `cdprune run` prints: dense and pruned side by side."""
    dense, pruned = result.runs[0], result.runs[-1]
    task = result.settings.make_task()
    doing = f", {task.describe()}" if task.named_in_titles else ""
    return "\n".join([
        f"{dense.model} on {dense.data}{doing}: dense vs {pruned.plan['mode']} at target {pruned.plan['target']:g}, "
        f"{result.settings.epochs} epochs on {dense.train_size} images, tested on {dense.test_size}",
        comparison_table(result.runs), "",
        f"report: {result.out}/report.md, chart: {result.out}/comparison.png"])


def bench_text(r) -> str:
    """What `cdprune bench` prints: one benchmark; a pruned model also against the dense one."""
    against = [] if r.speedup is None else [
        ["dense latency p50", f"{r.dense_p50_ms:.2f} ms (same architecture unpruned, measured the same way)"],
        ["speed-up over dense", f"{r.speedup:.2f}× for {r.flops_ratio:.2f}× fewer FLOPs "
                                f"(speed-up ÷ FLOPs ratio {r.speedup_per_flops:.2f})"]]
    task = f" · task {r.task}" if r.task is not None and tasks.get_task(r.task).named_in_titles else ""
    precision = " · int8" if r.precision == "int8" else ""
    return "\n".join([
        f"{r.model} ({r.method}){task} · {r.runtime_version}{precision} · {r.device} ({r.device_name}) · "
        f"input {'×'.join(map(str, r.input_shape))} · batch {r.batch} · {_threads(r.threads)}",
        table(["", "value"], [
            ["latency p50", f"{r.p50_ms:.2f} ms"], *against, ["latency p90", f"{r.p90_ms:.2f} ms"],
            ["latency p99", f"{r.p99_ms:.2f} ms"], ["throughput", f"{r.throughput_per_s:.1f} inputs/s"],
            ["peak memory (RSS)",
             f"{human_bytes(r.peak_rss_bytes)} (+{human_bytes(r.rss_increase_bytes)} to load and run the model)"],
            ["CPU use", f"{r.cpu_percent:.0f}% of a core ({100 * r.cpu_utilisation:.0f}% of {_threads(r.threads)})"],
            ["energy / inference", f"{r.energy_mj:.3f} mJ ({r.energy['kind']})"]]
            + ([["energy, estimated", f"{r.energy['estimated_mj']:.3f} mJ"]] if "estimated_mj" in r.energy else [])
            + [["params", human_count(r.params)], ["FLOPs (MACs)", human_count(r.flops)],
               ["timed runs", f"{r.repeats} in {r.timed_s:.1f} s"]]),
        "", f"energy: {r.energy['source']}"]
        + ([f"estimate: {r.energy['estimated_source']}"] if "estimated_source" in r.energy else [])
        + ([f"energy model written to {r.calibrated['path']}: its estimate for this model is the measured "
            f"{r.calibrated['measured_mj']:.3f} mJ ({r.calibrated['model']['pj_per_mac']:.4g} pJ/MAC + "
            f"{r.calibrated['model']['pj_per_byte']:.4g} pJ/byte)"] if r.calibrated else []))


def _mj(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} mJ"


def export_text(result) -> str:
    """What `cdprune export` prints: the file, then its check in its runtime; an int8 export also compares the int8
    file with the fp32 model."""
    precision = " int8" if result.precision == "int8" else ""
    batch = "dynamic batch" if result.dynamic_batch else "batch 1"
    line = f"{result.format}{precision} model written to {result.path} ({human_bytes(result.bytes)}, {batch})"
    lines = [line]
    k = result.check
    if k:
        latency = ", ".join(f"{ms:.2f} ms at {n} thread{'s' if n != '1' else ''}" for n, ms in k["latency_ms"].items())
        checked = tasks.by_score(k.get("score_name", tasks.CLASSIFY.score.name)).score
        value, recorded = k.get("score", k.get("test_acc")), k.get("recorded_score", k.get("recorded_acc"))
        lines.append(f"checked in {k['runtime']}: {checked.label} {checked.text(value)} on {k['test_size']} images "
                     f"(the run's PyTorch model {checked.text(recorded)}, {checked.delta(value - recorded)}); "
                     f"latency p50 {latency} (batch 1)")
    elif result.unchecked:
        lines.append(f"not checked: {result.unchecked}")
    c = result.comparison
    if not c:
        return "\n".join(lines)
    fp32, int8 = c["fp32"], c["int8"]
    score = tasks.by_score(c.get("score_name", tasks.CLASSIFY.score.name)).score
    # Comparisons written before they named their score hold the accuracy alone.
    before, after = (fp32.get("score", fp32.get("test_acc")), int8.get("score", int8.get("test_acc")))
    q = result.metadata.get("quantization", {})
    runtime = k["runtime"].split(" ")[0] if k else "its runtime"
    rows = [[score.label, score.text(before), score.text(after), score.delta(after - before)],
            ["file size", human_bytes(fp32["bytes"]), human_bytes(int8["bytes"]), f"{c['size_ratio']:.2f}×"],
            [f"latency p50 ({runtime}, batch {c['batch']}, {c['threads']} thread)", f"{fp32['latency_ms']:.2f} ms",
             f"{int8['latency_ms']:.2f} ms", f"{1 / c['speedup']:.2f}×"]]
    return "\n".join(lines + [
        f"static int8 ({q.get('format')}, {'per-channel' if q.get('per_channel') else 'per-tensor'} weights), "
        f"calibrated on {q.get('calibration_images')} training images as the network receives them; tested on the run's {c['test_size']} test images",
        table(["", "fp32", "int8", "int8 / fp32"], rows)])


def onnx_eval_text(result) -> str:
    """What `cdprune eval RUN --onnx FILE` prints."""
    score = tasks.by_score(result.score_name).score
    value = result.test_acc if result.score is None else result.score
    recorded = result.recorded_acc if result.recorded_score is None else result.recorded_score
    return (f"{score.label} {score.text(value)} on {result.test_size} images through {result.runtime} "
            f"({result.precision} {result.path}; the run's PyTorch model scored {score.text(recorded)}, "
            f"{score.delta(value - recorded)})")


def samples_text(result) -> str:
    """The line `cdprune eval --samples` adds."""
    names = ", ".join(result.pictures)
    return (f"{len(result.indices)} samples written to {result.folder} ({names} of test images "
            f"{', '.join(map(str, result.indices))}, 8-bit PNG)")


def sweep_text(result) -> str:
    """What `cdprune sweep` prints: one row per point, blanks for unreachable points."""
    name = next((p.score_name for p in result.points if p.status == "ok"), tasks.CLASSIFY.score.name)
    # A meter's figures get their own column beside the estimate, where one answered.
    metered = any(p.energy_measured_mj is not None for p in result.points)
    rows = [[p.method, p.status] + ([score_text(name, p.score), human_count(p.params), human_count(p.flops),
                                     human_bytes(p.memory_bytes), f"{p.latency_ms:.2f} ms", f"{p.energy_mj:.3f} mJ"]
                                    + ([_mj(p.energy_measured_mj)] if metered else []) + [f"{p.cpu_ms:.2f} ms"]
                                    if p.status == "ok" else [""] * (8 if metered else 7))
            for p in result.points]
    header = ["run", "status", name, "params", "FLOPs", "memory", "latency", "energy (est.)"]
    header += ["energy (measured)"] if metered else []
    header += ["CPU time / inference"]
    return "\n".join([
        table(header, rows), "",
        f"data: {result.out}/sweep.csv; charts: {result.out}/tradeoff_resources.png, {result.out}/tradeoff_device.png"])

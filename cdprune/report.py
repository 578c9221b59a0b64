"""Human-readable text for every result: the library returns records, these turn them into what the CLI prints.

Functions take the records by their attributes (duck typing), so this module sits low in
the house and imports only the complexity types, the formatting helpers and the tasks, which say
how their scores read.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

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


def convergence_text(score, gain: float | None, converged: bool | None, epochs: int | None = None) -> str:
    """A run's convergence marker: 'yes (+0.40 pt in the last epoch)', 'NOT CONVERGED: +2.30 pt in the last
    epoch', 'unknown (one epoch)' for a run of `epochs` 1, and '-' for a record from before the check
    (`score`: the task's Score)."""
    if converged is None:
        return "unknown (one epoch)" if epochs == 1 else "-"
    rise = f"{score.delta(gain)} in the last epoch"
    return f"yes ({rise})" if converged else f"NOT CONVERGED: {rise}"


def _convergence_row(runs, task) -> list[str]:
    return ["converged"] + [convergence_text(task.score, r.last_epoch_gain, r.converged, r.epochs) for r in runs]


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


def latency_text(metrics) -> str:
    """A run's measured latency with its spread: '1.23 ms (p90 1.31)', and ', noisy' when the timing protocol
    flagged it (p90/p50 > 1.5 or a loaded machine; measure/timing.py)."""
    timed = metrics.latency or {}
    spread = f" (p90 {timed['p90_ms']:.2f}{', noisy' if timed.get('noisy') else ''})" if timed.get("p90_ms") else ""
    return f"{metrics.latency_ms:.2f} ms{spread}"


def comparison_rows(runs) -> tuple[list[str], list[list[str]]]:
    """Rows of the side-by-side table: one column per run, then each run's difference from the first (dense)
    for the task's scores and its ratio to it for the costs. The task says which scores it shows: accuracy;
    or PSNR, SSIM and the PSNR of the degraded input itself (what the network improves on)."""
    base = runs[0]
    header = [""] + [r.method for r in runs] + [f"{r.method} / {base.method}" for r in runs[1:]]
    rows = []
    task = tasks.create(base.task)
    for label, attr, score, differs in _score_rows(task):
        values = [getattr(r, attr) for r in runs]
        diffs = [score.delta(v - values[0]) if differs and None not in (v, values[0]) else "-" for v in values[1:]]
        rows.append([label] + [score.text(v) for v in values] + diffs)
    rows.append(_convergence_row(runs, task) + ["-"] * (len(runs) - 1))
    for label, attr, fmt in COMPARISON_ROWS:
        values = [getattr(r, attr) for r in runs]
        ratios = [f"{v / values[0]:.2f}×" if values[0] else "-" for v in values[1:]]
        if attr == "energy_mj":  # runs record the estimate; the label says so rather than assume it
            label = f"{label} {energy_label(r.energy.get('kind', 'estimated') for r in runs)}"
        cells = [latency_text(r) for r in runs] if attr == "latency_ms" else [fmt(v) for v in values]
        rows.append([label] + cells + ratios)
    return header, rows


def task_sentence(settings) -> str:
    """What the task adds to the Markdown reports about its scores ('' for classify)."""
    return settings.make_task().report_note()


def recipe_text(settings) -> str:
    """The training recipe in a phrase: 'batch 32, peak lr 0.02 (0.08 at batch 128), 10% warm-up then cosine,
    label smoothing 0.1, bf16 autocast'."""
    task = settings.make_task()
    smoothing = f", label smoothing {settings.label_smoothing:g}" if settings.label_smoothing else ""
    precision = f", {settings.autocast} autocast" if settings.autocast else ""
    schedule = f"{settings.warmup:.0%} warm-up then cosine" if settings.warmup else "cosine, no warm-up"
    return (f"batch {settings.batch_size}, peak lr {settings.effective_lr:.4g} ({settings.lr:g} at batch "
            f"{task.reference_batch}), {schedule}{smoothing}{precision}")


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
        f"{base.train_size} training images, {recipe_text(settings)}, seed {settings.seed}; "
        f"tested on {base.test_size} images. Device: {base.device}. {task_sentence(settings)}".rstrip(),
        "",
        markdown_table(header, rows),
        "",
        f"FLOPs are multiply-accumulates per input; memory is the conv/linear output feature maps at float32. "
        f"Latency: median (and p90) of batch-1 forward passes on this CPU ({_threads(base.latency.get('threads'))}), "
        f"timed until the median's 95 % interval is within ±3 %; 'noisy' marks p90/p50 > 1.5 or a loaded machine. "
        f"Energy: {base.energy.get('source')}.",
        "",
        *_with_blank(budget_section([(r.method, r.budget_check) for r in runs], markdown=True)),
    ])


def _max_gain(settings) -> str:
    score = settings.make_task().score
    return score.delta(score.max_last_gain).lstrip("+")


def compare_rows(summaries) -> tuple[list[str], list[list[str]]]:
    """One row per method: the task's score mean ± std and its extra scores' means (PSNR and SSIM), resources
    and reductions, latency, total training cost."""
    task = tasks.by_score(summaries[0].score_name if summaries else tasks.CLASSIFY.score.name)
    scores = [task.score.label] + [s.label for s in task.extra_scores]
    sized = [get_metric(m) for m in METRICS]  # the metrics a run's reduction records
    header = ["method", "seeds", *scores, "converged", *(m.title for m in sized), *(f"Δ{m.title}" for m in sized),
              "CPU latency", "energy (est.)", "epochs", "train time (all stages)", "train FLOPs (all stages)"]
    rows = []
    for s in summaries:
        r = s.reduction
        shown = [task.score.spread(s.score_mean, s.score_std)]
        shown += [extra.text(getattr(s, f"{extra.key}_mean")) for extra in task.extra_scores]
        shown.append(_seeds_convergence(s, task.score))
        rows.append([s.method, str(s.seeds), *shown, *(m.show(getattr(s, m.run_field)) for m in sized),
                     *(f"-{r[m.name]:.1%}" for m in sized), f"{s.latency_ms:.2f} ms", f"{s.energy_mj:.3f} mJ",
                     _epochs(s), f"{s.train_time_s:.0f} s", human_count(s.train_flops)])
    return header, rows


def compare_goal(result) -> str:
    """'a 0.5 flops reduction', or 'the budget latency=1ms (int8)'."""
    if result.budget:
        return f"the budget {result.budget['text']} ({result.budget['precision']})"
    return f"a {result.target:g} {result.metric} reduction"


def compare_budget_checks(result, first_seed: int) -> list[tuple[str, dict]]:
    """(label, check) of every method's seeds (first_seed, first_seed + 1, …), as compare.json records them."""
    return [(s.method if len(s.budget_checks) == 1 else f"{s.method} (seed {first_seed + k})", check)
            for s in result.summaries if s.budget_checks for k, check in enumerate(s.budget_checks)]


def _seeds_convergence(summary, score) -> str:
    """A method's convergence over its seeds: 'yes', or 'NOT CONVERGED: 2 of 3 seeds, up to +2.30 pt in the last
    epoch'; '-' where no seed could be checked (one-epoch runs, records from before the check)."""
    if summary.last_epoch_gain_max is None:
        return "-"
    if not summary.not_converged:
        return "yes"
    return (f"NOT CONVERGED: {summary.not_converged} of {summary.seeds} seed{'s' if summary.seeds != 1 else ''}, "
            f"up to {score.delta(summary.last_epoch_gain_max)} in the last epoch")


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
        f"# {settings.model} on {settings.data}: methods at {compare_goal(result)}", "",
        f"{_budget_sentence(result, settings)}, {train_size} training "
        f"images, {test_size} test images, {recipe_text(settings)}; "
        f"{settings.make_task().score.name} is the mean ± "
        f"std over seeds. Training cost counts every stage (dense pre-training and fine-tuning for the ranking "
        f"methods); training FLOPs = 3 × MACs per image × images seen. A method is marked not converged when its "
        f"{settings.make_task().score.name} rose by more than {_max_gain(settings)} in the last epoch on some seed. "
        f"{task_sentence(settings)}".rstrip(), "",
        markdown_table(header, rows), "",
        *_with_blank(budget_section(compare_budget_checks(result, settings.seed), markdown=True))])


def compare_text(result, settings) -> str:
    """What `cdprune compare` prints."""
    budget = budget_section(compare_budget_checks(result, settings.seed))
    return "\n".join([
        f"{settings.model} on {settings.data}: every method at {compare_goal(result)}, "
        f"{result.seeds} seed(s), " + (f"the training FLOPs of {result.train_budget['dense_epochs']} dense epochs each"
                                       if result.train_budget else f"{result.epochs} epochs"),
        table(*compare_rows(result.summaries)), "", *_with_blank(budget),
        f"tables: {result.out}/compare.md, {result.out}/compare.csv, {result.out}/compare.json"])


BUDGET_HEADER = ["run", "metric", "limit", "planned", "measured", "measured p90", "result"]


def budget_rows(checks) -> list[list[str]]:
    """One row per limit of each (label, budget check) pair, from the check as recorded (deploy.budget.BudgetCheck
    as a dict): the limit, the plan's estimate, the measured figure (latency: p50 of the shipped file) and its p90."""
    rows = []
    for label, check in checks:
        for row in check["rows"]:
            m = get_metric(row["metric"])
            rows.append([label, m.title, m.limit(row["limit"]), "-" if row["planned"] is None else m.show(row["planned"]),
                         m.show(row["measured"]), "-" if row["measured_p90"] is None else m.show(row["measured_p90"]),
                         "pass" if row["passed"] else "FAIL"])
    return rows


def budget_note(check: dict) -> str:
    """How a budget check measured: the file, its precision, runtime and threads."""
    what = f"{check['file']} ({check['precision']})" if check.get("file") else f"the PyTorch model ({check['precision']})"
    return (f"measured: {what} in {check['runtime_version']}, {_threads(check['threads'])}, batch 1; latency is the "
            f"p50 of the timed runs (p90 beside it), params, FLOPs and memory the pruned model's exact counts, energy "
            f"the energy model's estimate at the measured latency. A limit passes when the measured figure is at most "
            f"the limit.")


def budget_section(checks, markdown: bool = False) -> list[str]:
    """The budget table of a report, with how it was measured; [] when no run had a budget."""
    checks = [(label, check) for label, check in checks if check]
    if not checks:
        return []
    failed = sum(not row["passed"] for _, check in checks for row in check["rows"])
    head = f"budget: {'every limit holds' if not failed else f'{failed} limit(s) FAIL'}"
    rows = budget_rows(checks)
    body = markdown_table(BUDGET_HEADER, rows) if markdown else table(BUDGET_HEADER, rows)
    return [("## " if markdown else "") + head, *([""] if markdown else []), body, *([""] if markdown else []),
            budget_note(checks[0][1])]


def _with_blank(lines: list[str]) -> list[str]:
    """`lines` and a blank line after them, or nothing."""
    return [*lines, ""] if lines else []


def budget_value(metric: str, value: float) -> str:
    """A budget limit in its metric's unit (the metric table's `limit`): ms for latency, mJ for energy, bytes for
    memory, counts for params and FLOPs."""
    return get_metric(metric).limit(value)


def plan_text(plan, model_name: str, mode_title: str, plan_path) -> str:
    """What `cdprune prune` prints: the goal, the reduction and every unit's kept channels."""
    goal = f"target {plan.target:g}" if plan.target is not None else ""
    if plan.budget:
        goal += (" · " if goal else "") + "budget " + ", ".join(f"{m}≤{budget_value(m, v)}" for m, v in plan.budget.items())
    if plan.latency.get("margin"):
        goal += f" (latency planned to {budget_value('latency', plan.latency['planned_to_ms'])}, margin {plan.latency['margin']:.0%})"
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
        f"dense network {table.network_ms:.3f} ms measured; layers alone {table.layer_sum_ms:.3f} ms",
        _calibration_text(table),
        f"latency table written to {path}: plan with it anywhere, "
        f"cdprune prune {shlex.quote(model_name)}{model_flags} --mode la --latency-table {shlex.quote(str(path))}"])


def _calibration_text(table) -> str:
    """How the table turns layer times into the network's: the two-point line, or the one-point factor and why."""
    fit, point = table.fit, table.calibration_point
    if fit.points == 2:
        return (f"half-width network {point['network_ms']:.3f} ms measured; estimate = {fit.fixed_ms:.3f} ms fixed + "
                f"{fit.scale:.3f} × the layers' own times (calibrated on both networks)")
    why = f"; the half-width network ({point['network_ms']:.3f} ms) is not used: {fit.fallback}" if point else ""
    return (f"estimate = {fit.fixed_ms:.3f} ms for the call + {fit.scale:.3f} × the layers' own times (calibrated on "
            f"the dense network){why}")


def latency_pack_text(folder, model_name: str, model_flags: str = "") -> str:
    """What `cdprune latency-table --pack` prints: what the pack holds and the two commands that finish the job."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    t = manifest["table"]
    return "\n".join([
        f"{model_name} · {t['runtime']}, {t['precision']}, {t['threads']} thread{'s' if t['threads'] != 1 else ''} · "
        f"input {'×'.join(map(str, t['input_shape']))} · batch 1",
        f"latency-table pack written to {folder}: {len(manifest['files'])} layer files for {len(manifest['grids'])} "
        f"layers, the dense network{' and its half-width copy' if manifest.get('calibration') else ''}, manifest.json "
        f"and measure_table.py",
        "on the board (Python with onnxruntime and numpy): python measure_table.py --out table.json",
        f"then plan with it anywhere: cdprune prune {shlex.quote(model_name)}{model_flags} --mode la "
        f"--latency-table table.json"])


def units_text(units) -> str:
    """What `cdprune prune --verbose` adds: the coupled channels that cannot be pruned, with the reasons."""
    if not units.excluded:
        return "every coupled channel set is a prunable unit"
    rows = [[e.name, str(e.channels), e.reason] for e in units.excluded]
    return "not prunable:\n" + table(["channels of", "channels", "reason"], rows)


def run_text(metrics) -> str:
    """What `cdprune train` prints: one finished run."""
    task = tasks.create(metrics.task)
    scores = [[label, score.text(getattr(metrics, attr))] for label, attr, score, _ in _score_rows(task)]
    return table(["", metrics.method], [
        *scores, _convergence_row([metrics], task),
        ["params", human_count(metrics.params)], ["FLOPs", human_count(metrics.flops)],
        ["memory", human_bytes(metrics.memory_bytes)], ["CPU latency, batch 1", latency_text(metrics)],
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
    target = pruned.plan.get("target")
    goal = f"target {target:g}" if target is not None else "its budget"
    budget = budget_section([(r.method, r.budget_check) for r in result.runs])
    return "\n".join([
        f"{dense.model} on {dense.data}{doing}: dense vs {pruned.plan['mode']} at {goal}, "
        f"{result.settings.epochs} epochs on {dense.train_size} images, tested on {dense.test_size}",
        comparison_table(result.runs), "", *_with_blank(budget),
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
            ["latency p50", f"{r.p50_ms:.2f} ms{_median_ci(r)}"], *against, ["latency p90", f"{r.p90_ms:.2f} ms"],
            ["spread", f"p90/p50 {r.p90_ms / r.p50_ms:.2f}, " + (f"noisy: {r.noise}" if r.noisy else "not noisy")],
            ["latency p99", f"{r.p99_ms:.2f} ms"], ["throughput", f"{r.throughput_per_s:.1f} inputs/s"],
            ["peak memory (RSS)",
             f"{human_bytes(r.peak_rss_bytes)} (+{human_bytes(r.rss_increase_bytes)} to load and run the model)"],
            ["CPU use", f"{r.cpu_percent:.0f}% of a core ({100 * r.cpu_utilisation:.0f}% of {_threads(r.threads)})"],
            ["energy / inference", f"{r.energy_mj:.3f} mJ ({r.energy['kind']})"]]
            + ([["energy, estimated", f"{r.energy['estimated_mj']:.3f} mJ"]] if "estimated_mj" in r.energy else [])
            + [["params", human_count(r.params)], ["FLOPs (MACs)", human_count(r.flops)],
               ["timed runs", f"{r.repeats} in {r.timed_s:.1f} s" + ("" if r.converged else
                                                                     " (time limit reached before ±3 %)")]]),
        "", f"energy: {r.energy['source']}"]
        + ([f"estimate: {r.energy['estimated_source']}"] if "estimated_source" in r.energy else [])
        + ([f"energy model written to {r.calibrated['path']}: its estimate for this model is the measured "
            f"{r.calibrated['measured_mj']:.3f} mJ ({r.calibrated['model']['pj_per_mac']:.4g} pJ/MAC + "
            f"{r.calibrated['model']['pj_per_byte']:.4g} pJ/byte)"] if r.calibrated else [])
        + (["", *budget_section([(r.method, r.budget)])] if r.budget else []))


def _median_ci(r) -> str:
    """' ± 1.2 % (95 % CI of the median)', or '' when too few runs gave one."""
    return "" if r.ci_rel is None else f" ± {100 * r.ci_rel:.1f} % (95 % CI of the median)"


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


def _point_latency(point) -> str:
    spread = "" if point.latency_p90_ms is None else \
        f" (p90 {point.latency_p90_ms:.2f}{', noisy' if point.latency_noisy else ''})"
    return f"{point.latency_ms:.2f} ms{spread}"


def sweep_text(result) -> str:
    """What `cdprune sweep` prints: one row per point, blanks for unreachable points."""
    name = next((p.score_name for p in result.points if p.status == "ok"), tasks.CLASSIFY.score.name)
    # A meter's figures get their own column beside the estimate, where one answered.
    metered = any(p.energy_measured_mj is not None for p in result.points)
    score = tasks.by_score(name).score
    rows = [[p.method, p.status] + ([score_text(name, p.score), convergence_text(score, p.last_epoch_gain, p.converged),
                                     human_count(p.params), human_count(p.flops),
                                     human_bytes(p.memory_bytes), _point_latency(p), f"{p.energy_mj:.3f} mJ"]
                                    + ([_mj(p.energy_measured_mj)] if metered else []) + [f"{p.cpu_ms:.2f} ms"]
                                    if p.status == "ok" else [""] * (9 if metered else 8))
            for p in result.points]
    header = ["run", "status", name, "converged", "params", "FLOPs", "memory", "latency", "energy (est.)"]
    header += ["energy (measured)"] if metered else []
    header += ["CPU time / inference"]
    budget = budget_section([(p.method, p.budget_check) for p in result.points])
    return "\n".join([
        table(header, rows), "", *_with_blank(budget),
        f"data: {result.out}/sweep.csv; charts: {result.out}/tradeoff_resources.png, {result.out}/tradeoff_device.png"]
        + ([f"budgets: {result.out}/budgets.csv; chart: {result.out}/tradeoff_budget.png"] if budget else []))

"""Why the main job trains VGG-16 at width 0.5: dense VGG-16 on Fashion-MNIST for about the same training time,
at full width and at width 0.5.

    python benchmarks/main_job.py            # about 6 minutes on 2 idle cores of an AVX-512 CPU

The main job (`cdprune run`, cdprune.DEFAULT_JOB) has about four minutes of training for its dense and its
pruned model, so dense gets about two and a half. In that time full-width VGG-16 (about 130 training images/s on
the 2-core AVX-512 Xeon) sees about 18,000 images, width 0.5 (about 440/s) about 60,000. The rows: full width on
6,000 images × 3 epochs, and the job's own width 0.5 on 12,000 × 5. Same recipe otherwise (batch 64, lr 0.04 at
batch 128, 10 % warm-up then cosine, label smoothing 0.1), tested on the job's 5,000 test images.
Goal (issue: the main job shows a real trade-off): dense ≥ 85 % and converged (last epoch < 1 pt). Writes
benchmarks/results/main_job.{json,md}; runs live in benchmarks/runs/main-job (resumable).
"""
import dataclasses
import os
from dataclasses import replace
from pathlib import Path

import torch

import cdprune
from cdprune.experiment import DEFAULT_JOB
from cdprune.formatting import markdown_table
from cdprune.measure.latency import cpu_description
from cdprune.storage import atomic_write_json, atomic_write_text

HERE = Path(__file__).parent
JOB = cdprune.RunSettings(DEFAULT_JOB["model"], DEFAULT_JOB["data"], model_args=DEFAULT_JOB["model_args"],
                          epochs=DEFAULT_JOB["epochs"], train_subset=DEFAULT_JOB["train_subset"],
                          test_subset=DEFAULT_JOB["test_subset"], batch_size=DEFAULT_JOB["batch_size"],
                          lr=DEFAULT_JOB["lr"])
CANDIDATES = {"width 1.0, 6,000 images × 3 epochs": replace(JOB, model_args={}, train_subset=6000, epochs=3),
              "width 0.5, 12,000 images × 5 epochs (the job)": JOB}


def cpu_flags() -> list[str]:
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx", "amx")))


def main() -> None:
    rows, records = [], []
    for i, (name, settings) in enumerate(CANDIDATES.items()):
        run = cdprune.train_run(HERE / "runs" / "main-job" / f"dense-{i}", settings, progress=False)
        records.append({"candidate": name, "settings": dataclasses.asdict(settings), "test_acc": run.test_acc,
                        "converged": run.converged, "last_epoch_gain": run.last_epoch_gain,
                        "train_time_s": run.train_time_s, "train_flops": run.train_flops, "flops": run.flops,
                        "images_per_s": run.train_size * run.epochs / run.train_time_s})
        rows.append([name, f"{100 * run.test_acc:.2f} %",
                     "yes" if run.converged else f"no (+{100 * run.last_epoch_gain:.2f} pt in the last epoch)",
                     f"{run.train_time_s:.0f} s", f"{records[-1]['images_per_s']:.0f}", f"{run.flops / 1e6:.1f}M"])
    cpu, load = cpu_description(), os.getloadavg()[0]
    atomic_write_json(HERE / "results" / "main_job.json", {"cpu": cpu, "cpu_flags": cpu_flags(),
                                                            "threads": torch.get_num_threads(), "load_1min": load,
                                                            "candidates": records})
    header = ["dense VGG-16", "test accuracy", "converged", "training time", "images/s", "MACs"]
    atomic_write_text(HERE / "results" / "main_job.md", "\n".join([
        "# The main job's model: full-width VGG-16 against width 0.5 at about the same training time", "",
        f"Fashion-MNIST, batch {JOB.batch_size}, lr {JOB.lr} at batch 128, tested on {JOB.test_subset} images; "
        f"CPU: {cpu}, {torch.get_num_threads()} threads, 1-minute load {load:.1f} at the end.", "",
        markdown_table(header, rows), ""]))
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()

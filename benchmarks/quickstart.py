"""The README's main job, timed: `cdprune run` with its defaults, as quick-start command 1 runs it.

    python benchmarks/quickstart.py

Runs the job in a fresh folder (benchmarks/runs/quickstart, emptied first) in a child process,
exactly as a user types it, and writes benchmarks/results/quickstart.json: the job's summary.json
(the README's output block is rendered from it by docs/render.py), the job's wall time, what it
printed on stderr about its time estimate, and the CPU it ran on. Setup (apt, venv, pip) is not
part of the figure: the README states it apart.
"""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cdprune.measure.latency import cpu_description
from cdprune.storage import atomic_write_json

HERE = Path(__file__).parent
WORK = HERE / "runs" / "quickstart"
OUT = "runs/vgg16-fashion-mnist-fa0.5"  # the folder `cdprune run` names by default


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    start = time.perf_counter()
    job = subprocess.run([sys.executable, "-m", "cdprune", "run", "--no-progress"], cwd=WORK,
                         capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    if job.returncode != 0:
        sys.exit(f"cdprune run failed ({job.returncode}):\n{job.stderr}")
    summary = json.loads((WORK / OUT / "summary.json").read_text())
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    record = {**summary, "job_wall_s": round(wall_s, 1), "cpu": cpu_description(),
              "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c")),
              "stdout": job.stdout, "stderr": job.stderr}
    atomic_write_json(HERE / "results" / "quickstart.json", record)
    print(job.stdout)
    print(f"job wall time {wall_s:.0f} s on {record['cpu']}")


if __name__ == "__main__":
    main()

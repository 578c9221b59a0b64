"""The board side of a latency-table pack: `python measure_table.py [--threads N] [--repeats N] --out table.json`.

`measure/pack.py` ships this file as the pack's one script, with measure/timing.py's code in place of
its import, so it needs only Python, numpy and onnxruntime on the board (no torch, no cdprune). It
times every ONNX file the pack's manifest lists, by cdprune's protocol: a grid entry is the fastest of
at least `repeats` runs lasting at least `min_time_s` (`fastest_ms`), the dense network the median of
`time_calls`, and so the half-width network of the calibration point where the pack has one; and
writes the latency table JSON (TABLE_FORMAT) that `cdprune prune --latency-table` reads.
"""
import argparse
import json
import os
import platform
import sys
import tempfile

from .timing import fastest_ms, time_calls

MANIFEST = "manifest.json"


def cpu_model_name() -> str:
    """/proc/cpuinfo's "model name", else what the platform reports (as cdprune's measure.latency says)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def session(path: str, threads: int):
    """An ONNX Runtime CPU session as cdprune opens one (measure.latency.ort_session)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # sequential graph: intra-op threads are the only parallelism
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def file_step(path: str, threads: int):
    import numpy as np

    run = session(path, threads)
    given = run.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in given.shape],
                                                 dtype=np.float32)
    return lambda: run.run(None, {given.name: x})


def measure(folder: str, threads: int, repeats: int, min_time_s: float) -> dict:
    """The latency table of the pack in `folder`, timed here."""
    import onnxruntime as ort

    with open(os.path.join(folder, MANIFEST)) as f:
        manifest = json.load(f)
    timing = manifest["timing"]
    times = {}
    for n, name in enumerate(sorted(manifest["files"])):
        print(f"\r{n + 1}/{len(manifest['files'])} {name}", end="", file=sys.stderr, flush=True)
        times[name] = fastest_ms(file_step(os.path.join(folder, name), threads), timing["layer_warmup"], repeats,
                                 min_time_s)
    print(file=sys.stderr)
    grids = {layer: [[times[name] for name in row] for row in grid] for layer, grid in manifest["grids"].items()}

    def network_time(name: str) -> dict:
        return time_calls(file_step(os.path.join(folder, name), threads),
                          warmup=timing["network_warmup"], min_repeats=max(timing["network_min_repeats"], repeats),
                          min_time_s=timing["network_time_factor"] * min_time_s,
                          max_time_s=timing["network_time_limit"] * timing["network_time_factor"] * min_time_s)

    network = network_time(manifest["network"])
    point = None
    if manifest.get("calibration"):
        half = network_time(manifest["calibration"]["network"])
        point = {"network_ms": half["p50_ms"], "fractions": manifest["calibration"]["fractions"],
                 "network_timing": {k: half[k] for k in timing["network_fields"]}}
    overhead = fastest_ms(file_step(os.path.join(folder, manifest["overhead"]), threads), timing["layer_warmup"],
                          repeats, min_time_s) if manifest.get("overhead") else 0.0
    table = dict(manifest["table"])
    table.update({"runtime_version": f"onnxruntime {ort.__version__}", "threads": threads,
                  "cpu_model": cpu_model_name(), "machine": platform.machine(), "repeats": repeats,
                  "min_time_s": min_time_s, "network_ms": network["p50_ms"],
                  "layer_sum_ms": sum(grid[-1][-1] for grid in grids.values()), "overhead_ms": overhead,
                  "network_timing": {k: network[k] for k in timing["network_fields"]}, "calibration_point": point,
                  "grids": grids})
    return table


def main(argv=None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, MANIFEST)) as f:
        defaults = json.load(f)["table"]
    parser = argparse.ArgumentParser(description="time this pack's layers here and write a cdprune latency table")
    parser.add_argument("--threads", type=int, default=defaults["threads"],
                        help=f"intra-op threads (default {defaults['threads']}, the pack's)")
    parser.add_argument("--repeats", type=int, default=defaults["repeats"], help="timed runs per layer, at least")
    parser.add_argument("--min-time", type=float, default=defaults["min_time_s"], help="seconds per layer, at least")
    parser.add_argument("--out", required=True, help="where to write the table (JSON)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or not args.min_time >= 0:
        parser.error("--threads and --repeats must be at least 1, --min-time at least 0")
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        parser.error(f"{exc.name} is not installed: pip install onnxruntime numpy")
    table = measure(here, args.threads, args.repeats, args.min_time)
    out = os.path.abspath(args.out)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), prefix=".table-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(table, f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp, out)
    print(f"latency table written to {out}: plan with it anywhere, cdprune prune ... --latency-table {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

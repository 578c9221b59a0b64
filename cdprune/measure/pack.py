"""A latency-table pack: what a board needs to time a latency table without torch or cdprune (docs/design.md, §5.3).

`write_latency_pack` writes, instead of timing here, every layer variant of the grid as an ONNX file
(quantised as `export --int8` quantises for an int8 table), the dense model (for `network_ms`), the
half-width model of the table's calibration point when the caller gives one (quantised alike), a
manifest (MANIFEST) and one script, `measure_table.py`: the board runs
`python measure_table.py [--threads N] --out table.json` with only onnxruntime and numpy installed,
and gets the table JSON that `cdprune prune --latency-table` reads. The script is measure/board.py with
measure/timing.py's code in place of its import, so the board times by cdprune's own protocol.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from ..complexity import architecture_id
from ..errors import CdpruneError
from . import board, timing
from .layer_latency import (DEFAULT_MIN_TIME_S, DEFAULT_REPEATS, FRACTIONS, NETWORK_TIME_FACTOR, NETWORK_TIME_LIMIT,
                            TABLE_FORMAT, check_calibration, check_precision, check_timing, cpu_copy, grid_cells,
                            grid_rows, traced_copy)
from .runtimes import deployed_onnx

PACK_FORMAT = "cdprune-latency-pack/1"
SCRIPT = "measure_table.py"
MANIFEST = board.MANIFEST
PACK_RUNTIMES = ("onnxruntime",)  # the runtimes the board script runs
HALF_NETWORK = "half_network.onnx"
_NETWORK_FIELDS = ("p50_ms", "p90_ms", "n", "ci_rel", "converged", "noisy", "noise")


def board_script() -> str:
    """measure_table.py: board.py with timing.py's code in place of its relative import."""
    own = "from __future__ import annotations\n"
    timing_code = Path(timing.__file__).read_text().replace(own, "")
    board_code = Path(board.__file__).read_text().replace(own, "")
    importing = "from .timing import fastest_ms, time_calls\n"
    if importing not in board_code:
        raise AssertionError("board.py no longer imports the timing protocol as pack.py expects")
    return (board_code.replace(importing, "# ---- the timing protocol: a copy of cdprune/measure/timing.py ----\n"
                               + timing_code + "\n# ---- the board script ----\n"))


def write_latency_pack(model: nn.Module, input_shape, out: str | Path, runtime: str = "onnxruntime",
                       threads: int | None = None, *, precision: str = "fp32", repeats: int = DEFAULT_REPEATS,
                       min_time_s: float = DEFAULT_MIN_TIME_S, progress: bool = False,
                       calibration_model: nn.Module | None = None, calibration_fractions: dict | None = None) -> Path:
    """Write the pack for `model` at `input_shape` to the new folder `out` (atomically: a temporary folder
    renamed once complete) and return its path. threads, repeats and min_time_s are the script's defaults.
    calibration_model, calibration_fractions: the table's second calibration point, as `build_latency_table`
    takes them; the half-width model is shipped as half_network.onnx and timed on the board like the dense one."""
    if runtime not in PACK_RUNTIMES:
        raise CdpruneError(f"a latency-table pack is timed by ONNX Runtime on the board, not {runtime}",
                           f"use --runtime {' or '.join(PACK_RUNTIMES)} with --pack")
    check_precision(runtime, precision)
    check_timing(threads, repeats, min_time_s)
    out = Path(out)
    if out.exists():
        raise CdpruneError(f"{out} already exists", "choose a new folder for the pack (--pack)")
    if not out.parent.is_dir():
        raise CdpruneError(f"cannot write the pack to {out}", f"folder {out.parent} does not exist; create it first")
    input_shape = tuple(int(s) for s in input_shape)
    threads = threads or torch.get_num_threads()
    net, layers = traced_copy(model, input_shape)
    fractions = check_calibration(calibration_model, calibration_fractions, layers)

    from tqdm import tqdm

    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        (tmp / "layers").mkdir()
        files, grids, timed = {}, {}, {}
        for name in tqdm(list(layers), desc="exporting layers", disable=not progress, file=None):
            cells = list(grid_cells(layers[name], runtime))
            for cell in cells:
                file = f"layers/{name}-{cell.shape[0]}x{cell.shape[1]}.onnx"
                if file not in files:
                    (tmp / file).write_bytes(deployed_onnx(cell.module, cell.input_shape, precision))
                    files[file] = {"layer": name, "in": cell.shape[0], "out": cell.shape[1],
                                   "input_shape": list(cell.input_shape)}
            grids[name] = [[f"layers/{name}-{c.shape[0]}x{c.shape[1]}.onnx" for c in row] for row in grid_rows(cells)]
            timed[name] = layers[name].description(runtime)
        (tmp / "network.onnx").write_bytes(deployed_onnx(net, input_shape, precision))
        (tmp / "overhead.onnx").write_bytes(deployed_onnx(torch.nn.Identity(), input_shape, "fp32"))
        calibration = None
        if calibration_model is not None:
            (tmp / HALF_NETWORK).write_bytes(deployed_onnx(cpu_copy(calibration_model), input_shape, precision))
            calibration = {"network": HALF_NETWORK, "fractions": fractions}
        spec = getattr(model, "cdprune_spec", None) or {}
        manifest = {
            "format": PACK_FORMAT,
            "table": {"format": TABLE_FORMAT, "model": spec.get("name"), "architecture": architecture_id(model),
                      "input_shape": list(input_shape), "runtime": runtime, "precision": precision,
                      "threads": threads, "torch_version": torch.__version__, "fractions": list(FRACTIONS),
                      "repeats": repeats, "min_time_s": float(min_time_s), "layers": timed},
            "timed": (f"each file batch 1 in ONNX Runtime ({precision}); a grid entry is the fastest of at least "
                      f"`repeats` runs lasting at least `min_time_s`; network.onnx is the dense model, timed by the "
                      f"median-CI protocol for network_ms; overhead.onnx, an identity, "
                      f"times one call's fixed cost like a grid entry; {HALF_NETWORK}, where present, is the model "
                      f"with every prunable unit at half its channels, timed like network.onnx for the "
                      f"calibration point"),
            "grids": grids, "files": files, "network": "network.onnx", "overhead": "overhead.onnx",
            "calibration": calibration,
            "timing": {"layer_warmup": 3, "network_warmup": 5, "network_min_repeats": 5,
                       "network_time_factor": NETWORK_TIME_FACTOR, "network_time_limit": NETWORK_TIME_LIMIT,
                       "network_fields": list(_NETWORK_FIELDS)}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / SCRIPT).write_text(board_script())
        os.chmod(tmp, 0o755)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out

"""Energy meters: read the energy a device reports while a measurement runs.

Each meter has `available() -> bool`, `start()` and `stop() -> joules`, the energy
consumed between the two calls. `discover_meter` returns the first meter that works
here, in this order:

1. Linux RAPL (`/sys/class/powercap/intel-rapl:N/energy_uj`), for CPU runs: the
   package domains summed. It counts the whole CPU, idle cores and other
   processes included.
2. NVIDIA NVML (`nvmlDeviceGetTotalEnergyConsumption`), for CUDA runs when
   `pynvml` imports: the whole GPU.
3. Jetson INA3221 power monitors (`/sys/bus/i2c/drivers/ina3221x/*/iio:device*/
   in_power*_input`, mW), sampled in a background thread and integrated.

Every path is taken under a sysfs `root` (default "/"), so tests can point the
meters at a fake tree.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

RAPL_SOURCE = "RAPL package (whole CPU, idle included)"
# What `discover_meter` tries, for messages that must say why no meter was found.
METERS_LOOKED_FOR = ("looked for Linux RAPL (/sys/class/powercap/intel-rapl:N/energy_uj, readable; usually root only) "
                     "for --device cpu, NVIDIA NVML (pynvml installed) for --device cuda, and Jetson INA3221 rails "
                     "(/sys/bus/i2c/drivers/ina3221x); run where one of them is readable")
_PACKAGE_DOMAIN = re.compile(r"intel-rapl:\d+")  # top level only: intel-rapl:0:0 (cores, dram) sits inside it


class EnergyMeter:
    """Energy consumed between `start()` and `stop()`, in joules."""

    source = ""  # what the meter counts, for the report

    def available(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> float:
        raise NotImplementedError


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


class RaplMeter(EnergyMeter):
    """Linux RAPL: the cumulative µJ counters of the CPU package domains, summed.

    A counter wraps to 0 after `max_energy_range_uj`; one wrap per domain between
    start and stop is undone (at 100 W that leaves tens of seconds at least).
    """

    source = RAPL_SOURCE

    def __init__(self, root: str | Path = "/"):
        base = Path(root) / "sys/class/powercap"
        self.domains = sorted(d for d in base.glob("intel-rapl:*") if _PACKAGE_DOMAIN.fullmatch(d.name)) \
            if base.is_dir() else []
        self._start: list[int] = []

    def available(self) -> bool:
        # energy_uj is readable by root only on most kernels since 2020 (CVE-2020-8694).
        try:
            return bool(self.domains) and all(_read_int(d / "energy_uj") >= 0 for d in self.domains)
        except (OSError, ValueError):
            return False

    def _read(self) -> list[int]:
        return [_read_int(d / "energy_uj") for d in self.domains]

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        total_uj = 0
        for domain, before, after in zip(self.domains, self._start, self._read()):
            delta = after - before
            if delta < 0:  # the counter wrapped past max_energy_range_uj
                delta += _read_int(domain / "max_energy_range_uj")
            total_uj += delta
        return total_uj * 1e-6


class NvmlMeter(EnergyMeter):
    """NVIDIA NVML: the GPU's total energy counter (mJ since the driver loaded)."""

    def __init__(self, device_index: int = 0):
        self.index = device_index
        self._nvml = None
        self._handle = None
        self._start = 0

    def available(self) -> bool:
        try:
            import pynvml
            pynvml.nvmlInit()
            self._handle = self._find_handle(pynvml)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)  # Volta and newer only
            name = pynvml.nvmlDeviceGetName(self._handle)
        except Exception:  # ImportError, NVMLError_*: no usable counter here
            return False
        self._nvml = pynvml
        self.source = f"NVML total energy (whole GPU {name.decode() if isinstance(name, bytes) else name})"
        return True

    def _find_handle(self, pynvml):
        # NVML numbers all GPUs, CUDA only the visible ones (CUDA_VISIBLE_DEVICES): match by UUID.
        try:
            import torch
            uuid = str(torch.cuda.get_device_properties(self.index).uuid)
            return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except Exception:
            return pynvml.nvmlDeviceGetHandleByIndex(self.index)

    def start(self) -> None:
        self._start = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def stop(self) -> float:
        return (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._start) * 1e-3


class Ina3221Meter(EnergyMeter):
    """Jetson INA3221 power rails (mW), sampled every `interval_s` in a thread, integrated by trapezoids.

    When a rail is the board input (its `rail_name_N` ends in `_IN`, e.g. POM_5V_IN or
    VDD_IN), only input rails are summed, since the others are parts of it; otherwise
    all rails are summed.
    """

    def __init__(self, root: str | Path = "/", interval_s: float = 0.01):
        self.interval_s = interval_s
        rails = sorted(Path(root).glob("sys/bus/i2c/drivers/ina3221x/*/iio:device*/in_power*_input"))
        names = {rail: self._rail_name(rail) for rail in rails}
        inputs = [r for r in rails if names[r].upper().endswith("_IN")]
        self.rails = inputs or rails
        self.source = f"Jetson INA3221 rails: {', '.join(names[r] for r in self.rails)}"
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._joules = 0.0

    @staticmethod
    def _rail_name(rail: Path) -> str:
        index = re.search(r"in_power(\d+)_input", rail.name).group(1)
        try:
            return (rail.parent / f"rail_name_{index}").read_text().strip()
        except OSError:
            return rail.name

    def available(self) -> bool:
        try:
            return bool(self.rails) and self._power_w() >= 0
        except (OSError, ValueError):
            return False

    def _power_w(self) -> float:
        return sum(_read_int(r) for r in self.rails) * 1e-3

    def start(self) -> None:
        self._joules = 0.0
        self._stop.clear()
        self._last = (time.perf_counter(), self._power_w())
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        now, power = time.perf_counter(), self._power_w()
        then, before = self._last
        self._joules += (before + power) / 2 * (now - then)
        self._last = (now, power)

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._sample()  # close the interval at the moment of stop()
        return self._joules


def discover_meter(device: str = "cpu", root: str | Path = "/") -> EnergyMeter | None:
    """The first energy meter available for a run on `device` ("cpu", "cuda", "cuda:N"), or None."""
    is_cuda = device.startswith("cuda")
    candidates: list[EnergyMeter] = []
    if not is_cuda:  # RAPL sees the CPU only; a GPU run's energy is elsewhere
        candidates.append(RaplMeter(root))
    if is_cuda:
        candidates.append(NvmlMeter(int(device.partition(":")[2] or 0)))
    candidates.append(Ina3221Meter(root))  # Jetson: board rails, CPU and integrated GPU alike
    return next((m for m in candidates if m.available()), None)

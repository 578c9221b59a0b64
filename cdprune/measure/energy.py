"""Energy per inference: an energy model's coefficients priced over every layer's MACs and bytes moved.

Per conv and linear layer (docs/design.md, "Energy"):

    E_layer = e_mac · MACs + e_byte · (weight bytes + input bytes read + output bytes written)

at the network's precision (`complexity.traffic_bytes`: 4 bytes per value for float32). The network
estimate is the sum of its layers, plus `static_w × latency` where the model has a static power and
a latency is known. The default coefficients are Horowitz's 45 nm figures ("Computing's energy
problem", ISSCC 2014): e_mac = 4.6 pJ (fp32 multiply 3.7 pJ + add 0.9 pJ), e_byte = 160 pJ per
DRAM byte (640 pJ per 32-bit access). They are settings, not truths: `EnergyModel.load` reads a
device's own from a JSON file, and `calibrate` scales them to a measured device.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import CdpruneError
from ..storage import atomic_write_json, load_json_file

E_MAC_PJ = 4.6
E_DRAM_PJ_PER_BYTE = 160.0
DEFAULT_DEVICE = "45 nm model (Horowitz ISSCC 2014)"
SOURCE = "estimated: 45 nm model (Horowitz ISSCC 2014), 4.6 pJ/MAC + 160 pJ/DRAM byte"
_EXAMPLE = '{"pj_per_mac": 4.6, "pj_per_byte": 160, "static_w": 0, "device": "my board"}'


@dataclass(frozen=True)
class EnergyModel:
    """Coefficients that turn a layer's MACs and bytes moved into joules, and where they come from.

    The JSON file (`--energy-model FILE.json`) holds {"pj_per_mac", "pj_per_byte", "static_w", "device"};
    static_w (watts while the network runs, times its latency) and device are optional.
    """

    pj_per_mac: float = E_MAC_PJ
    pj_per_byte: float = E_DRAM_PJ_PER_BYTE
    static_w: float = 0.0
    source: str = DEFAULT_DEVICE  # the device or reference the coefficients describe

    def mj(self, macs, bytes_moved):
        """Dynamic energy in mJ of `macs` multiply-accumulates and `bytes_moved` bytes (numbers or numpy arrays)."""
        # Two products summed in this order everywhere, so that a plan's figure and a profile's agree to the bit.
        return self.pj_per_mac * macs * 1e-9 + self.pj_per_byte * bytes_moved * 1e-9

    def describe(self) -> str:
        text = f"estimated: {self.source}, {self.pj_per_mac:g} pJ/MAC + {self.pj_per_byte:g} pJ/DRAM byte"
        return text + (f" + {self.static_w:g} W static × latency" if self.static_w else "")

    def to_dict(self) -> dict:
        """The file format, also what a plan records."""
        return {"pj_per_mac": self.pj_per_mac, "pj_per_byte": self.pj_per_byte, "static_w": self.static_w,
                "device": self.source}

    @classmethod
    def from_dict(cls, data, where: str = "energy model") -> "EnergyModel":
        """Checked coefficients; anything else is one line naming `where` and the expected form."""
        def bad(why: str) -> CdpruneError:
            return CdpruneError(f"{where} {why}", f"give a JSON object like {_EXAMPLE} (--energy-model)")

        if not isinstance(data, dict):
            raise bad("is not a JSON object")
        unknown = sorted(set(data) - {"pj_per_mac", "pj_per_byte", "static_w", "device"})
        if unknown:
            raise bad(f"has unknown field {unknown[0]!r}")
        values = {}
        for key in ("pj_per_mac", "pj_per_byte", "static_w"):
            if key not in data:
                if key == "static_w":
                    values[key] = 0.0
                    continue
                raise bad(f"lacks {key}")
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise bad(f"has {key}={value!r}, not a finite number >= 0")
            values[key] = float(value)
        if values["pj_per_mac"] == values["pj_per_byte"] == 0:
            raise bad("prices neither MACs nor bytes (both 0)")
        device = data.get("device", "device energy model")
        if not isinstance(device, str) or "\n" in device:
            raise bad("has a device that is not one line of text")
        return cls(values["pj_per_mac"], values["pj_per_byte"], values["static_w"], device)

    @classmethod
    def load(cls, path: str | Path) -> "EnergyModel":
        data = load_json_file(path, "energy model file",
                              missing=f"give a JSON file like {_EXAMPLE} (--energy-model), or calibrate one with "
                                      f"'cdprune bench MODEL --calibrate-energy {path}'",
                              fix=f"give a JSON file like {_EXAMPLE} (--energy-model)")
        return cls.from_dict(data, f"energy model file {path}")

    def save(self, path: str | Path) -> Path:
        atomic_write_json(path, self.to_dict())
        return Path(path)


DEFAULT_ENERGY_MODEL = EnergyModel()


def energy_model_of(value) -> EnergyModel:
    """An energy model as the API takes it: None (the 45 nm default), an EnergyModel, or a JSON file's path."""
    if value is None:
        return DEFAULT_ENERGY_MODEL
    if isinstance(value, EnergyModel):
        return value
    if isinstance(value, (str, Path)):
        return EnergyModel.load(value)
    raise CdpruneError(f"energy_model (--energy-model) must be an EnergyModel or a JSON file's path, "
                       f"not {type(value).__name__}")


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy of one inference in millijoules: MACs, bytes moved and the static term."""

    energy_mj: float
    compute_mj: float
    memory_mj: float
    static_mj: float
    bytes_moved: int
    kind: str  # "estimated" (a meter's figure is "measured", see cdprune.deploy.bench)
    source: str
    model: dict  # the energy model's coefficients (its file format)

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_energy(profile, energy_model: EnergyModel | None = None, latency_ms: float | None = None) -> EnergyEstimate:
    """Estimate one inference of the profiled network: the sum of its layers (+ static_w × latency_ms if known).

    `profile` is a `cdprune.Profile`; without an energy model, the 45 nm default prices it.
    """
    model = energy_model or DEFAULT_ENERGY_MODEL
    flops, moved = profile.totals.flops, profile.bytes_moved
    compute, memory = model.pj_per_mac * flops * 1e-9, model.pj_per_byte * moved * 1e-9
    static = model.static_w * latency_ms if latency_ms is not None else 0.0  # W × ms = mJ
    return EnergyEstimate(energy_mj=compute + memory + static, compute_mj=compute, memory_mj=memory, static_mj=static,
                          bytes_moved=moved, kind="estimated", source=model.describe(), model=model.to_dict())


def calibrate(model: EnergyModel, measured_mj: float, estimated_dynamic_mj: float, latency_ms: float,
              description: str) -> EnergyModel:
    """`model` with both coefficients scaled by one factor, so that its estimate equals `measured_mj`.

    One factor keeps the model's split between arithmetic and memory traffic: one measured network
    cannot tell the two apart, so the split stays what the model (by default, 45 nm) says it is.
    The static term, static_w × latency_ms, is kept and taken off the measurement first.
    """
    dynamic = measured_mj - model.static_w * latency_ms
    if not dynamic > 0 or not estimated_dynamic_mj > 0:
        raise CdpruneError(f"the measured {measured_mj:.4g} mJ per inference leaves nothing for MACs and bytes after the "
                           f"static {model.static_w:g} W × {latency_ms:.3g} ms", "lower static_w in the energy model "
                           "(--energy-model)")
    factor = dynamic / estimated_dynamic_mj
    return EnergyModel(model.pj_per_mac * factor, model.pj_per_byte * factor, model.static_w,
                       f"{description}, {factor:.4g} × {model.source}")

"""Measure — what a model costs on this device: latency, energy.

These are the primitives a training run records; benchmarking a whole run in a fresh
process, export and deployment live one layer up, in `cdprune.deploy`.
"""
from .energy import DEFAULT_ENERGY_MODEL, EnergyEstimate, EnergyModel, estimate_energy
from .latency import LatencyStats, measure_latency
from .meters import EnergyMeter, Ina3221Meter, NvmlMeter, RaplMeter, discover_meter

__all__ = ["DEFAULT_ENERGY_MODEL", "EnergyEstimate", "EnergyModel", "estimate_energy", "LatencyStats", "measure_latency", "EnergyMeter", "RaplMeter",
           "NvmlMeter", "Ina3221Meter", "discover_meter"]

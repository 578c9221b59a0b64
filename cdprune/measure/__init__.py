"""Measure — what a model costs on this device: latency, energy.

`cdprune.measure.bench.bench` benchmarks a model in a fresh process (it is not imported
here, since it builds on cdprune.runs, which imports this package).
"""
from .energy import EnergyEstimate, estimate_energy
from .latency import LatencyStats, measure_latency
from .meters import EnergyMeter, Ina3221Meter, NvmlMeter, RaplMeter, discover_meter

__all__ = ["EnergyEstimate", "estimate_energy", "LatencyStats", "measure_latency", "EnergyMeter", "RaplMeter",
           "NvmlMeter", "Ina3221Meter", "discover_meter"]

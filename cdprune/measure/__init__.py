"""Measure — what a model costs on this device: latency, energy."""
from .energy import EnergyEstimate, estimate_energy
from .latency import LatencyStats, measure_latency

__all__ = ["EnergyEstimate", "estimate_energy", "LatencyStats", "measure_latency"]

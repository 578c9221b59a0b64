"""Energy per inference, estimated from FLOPs and memory traffic (SPEC §8).

    E = MACs · e_mac + bytes_moved · e_dram

with 45 nm figures from Horowitz, "Computing's energy problem", ISSCC 2014:
e_mac = 4.6 pJ (fp32 multiply 3.7 pJ + add 0.9 pJ), e_dram = 160 pJ per byte
(640 pJ per 32-bit DRAM access). bytes_moved = the weights read once + every
conv/linear activation written once and read once + the input read once.
These constants are settings, not truths; the report names them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..complexity import BYTES_PER_VALUE, Totals

E_MAC_PJ = 4.6
E_DRAM_PJ_PER_BYTE = 160.0
SOURCE = "estimated: 45 nm model (Horowitz ISSCC 2014), 4.6 pJ/MAC + 160 pJ/DRAM byte"


@dataclass(frozen=True)
class EnergyEstimate:
    """Energy of one inference in millijoules, split into compute and DRAM traffic."""

    energy_mj: float
    compute_mj: float
    memory_mj: float
    bytes_moved: int
    kind: str  # "estimated" or "measured"
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_energy(totals: Totals, input_shape, e_mac_pj: float = E_MAC_PJ,
                    e_dram_pj_per_byte: float = E_DRAM_PJ_PER_BYTE) -> EnergyEstimate:
    """Estimate the energy of one batch-1 inference of a network with these totals."""
    input_bytes = BYTES_PER_VALUE
    for s in input_shape:
        input_bytes *= s
    bytes_moved = totals.params * BYTES_PER_VALUE + 2 * totals.memory_bytes + input_bytes
    compute = totals.flops * e_mac_pj * 1e-9  # pJ -> mJ
    memory = bytes_moved * e_dram_pj_per_byte * 1e-9
    source = SOURCE if (e_mac_pj, e_dram_pj_per_byte) == (E_MAC_PJ, E_DRAM_PJ_PER_BYTE) else \
        f"estimated: {e_mac_pj} pJ/MAC + {e_dram_pj_per_byte} pJ/DRAM byte"
    return EnergyEstimate(energy_mj=compute + memory, compute_mj=compute, memory_mj=memory,
                          bytes_moved=bytes_moved, kind="estimated", source=source)

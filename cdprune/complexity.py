"""Profile — where do the parameters, FLOPs and memory sit?

Counting observes one real forward pass (batch 1, float32) through forward
hooks, so any `nn.Module` works. Units (docs/design.md, "Complexity"):

- params: weights and biases; the network total is every parameter of the model.
- FLOPs: multiply-accumulates of conv, transposed-conv and linear layers (the pruning
  literature's convention; fvcore and `torch.utils.flop_counter` count 2 per MAC).
- memory: bytes of the layer's output feature map at float32, i.e. activation memory.
- bytes moved: what the layer reads and writes per inference (its weights, its input, its output),
  the traffic an energy model prices (docs/design.md, "Energy").
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .errors import CdpruneError
from .metrics import get_metric
from .records import Record

# The metrics a Totals holds, and so the keys of every reduction that plans and runs record (file formats);
# what each one is lives in the metric table (metrics.py).
METRICS = ("params", "flops", "memory")
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class LayerComplexity:
    """One conv or linear layer: its shape and its three complexities with their shares of the network total.

    A transposed conv (`transposed`) is a conv whose weight is applied once per *input* position,
    so its FLOPs are `weight.numel() × flop_positions` with the input's positions there.
    """

    name: str
    kind: str  # "conv" (plain, grouped, depthwise or transposed) or "linear"
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    groups: int
    output_shape: tuple[int, ...]  # one sample's output, e.g. (C_out, H_out, W_out)
    positions: int  # output positions per channel (H_out·W_out for a 2-D conv)
    params: int
    flops: int  # multiply-accumulates
    memory_bytes: int
    params_share: float
    flops_share: float
    memory_share: float
    transposed: bool = False
    flop_positions: int = 0  # positions each weight is applied at per call: `positions`, or the input's for a transposed conv
    input_positions: int = 0  # input positions per input channel (H_in·W_in for a 2-D conv)
    input_bytes: int = 0  # bytes of the input the layer reads, over all its calls
    bytes_moved: int = 0  # weights read + input read + output written, over all its calls (`traffic_bytes`)
    energy_mj: float | None = None  # estimated energy per inference, when profiled with an energy model
    energy_share: float | None = None

    def metric(self, name: str) -> int:
        return {"params": self.params, "flops": self.flops, "memory": self.memory_bytes}[name]

    def share(self, name: str) -> float:
        return {"params": self.params_share, "flops": self.flops_share, "memory": self.memory_share}[name]


@dataclass(frozen=True)
class Totals:
    """Network totals: parameters (count), FLOPs (MACs), activation memory (bytes)."""

    params: int
    flops: int
    memory_bytes: int

    def metric(self, name: str) -> int:
        """A metric the size model prices from these totals alone (see metrics.Sizes)."""
        return get_metric(name).of(self)

    def reduction_from(self, before: "Totals") -> dict[str, float]:
        """Fraction of each metric removed relative to `before` (0.5 = halved)."""
        return {m: 1.0 - self.metric(m) / before.metric(m) if before.metric(m) else 0.0 for m in METRICS}


@dataclass(frozen=True)
class Profile(Record):
    """Per-layer complexities of a network for one input shape (C, H, W).

    With an energy model, `energy_mj` is the network's estimated energy per inference,
    `energy_model.mj(totals.flops, bytes_moved)`, and every layer carries its own share of it.
    """

    input_shape: tuple[int, ...]
    layers: tuple[LayerComplexity, ...]
    totals: Totals
    energy_mj: float | None = None
    energy_model: object = None  # a cdprune.measure.energy.EnergyModel (this layer does not import it)

    @property
    def bytes_moved(self) -> int:
        """Bytes the conv and linear layers read and write in one inference."""
        return sum(layer.bytes_moved for layer in self.layers)

    def layer(self, name: str) -> LayerComplexity:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict:
        body = {"input_shape": list(self.input_shape), "totals": asdict(self.totals), "bytes_moved": self.bytes_moved,
                "layers": [asdict(layer) for layer in self.layers]}
        if self.energy_model is not None:
            body["energy"] = {"energy_mj": self.energy_mj, "kind": "estimated", "source": self.energy_model.describe(),
                              "model": self.energy_model.to_dict()}
        return body


def traffic_bytes(weights: int, inputs: int, outputs: int, bytes_per_value: int = BYTES_PER_VALUE) -> int:
    """Bytes one layer call moves: its weights read, its input read and its output written (counts of values).

    `bytes_per_value` is the precision the network runs at: 4 for float32 (today's runs), 1 for int8.
    """
    return (weights + inputs + outputs) * bytes_per_value


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,32,32' -> (3, 32, 32); a one-line error otherwise."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise CdpruneError(f"bad input shape '{text}'", "give C,H,W as positive integers, e.g. --input 3,32,32")
    return shape


def run_forward(model: nn.Module, input_shape: tuple[int, ...]):
    """One batch-1 forward pass in eval mode; a shape the model rejects is a user error."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(torch.zeros(1, *input_shape, device=device))
    except (RuntimeError, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shape = ",".join(map(str, input_shape))
        raise CdpruneError(f"the model rejects input shape {shape} ({first[:160]}); pass --input C,H,W that it accepts") from None
    finally:
        model.train(was_training)


def profile(model: nn.Module, input_shape=(3, 32, 32), energy_model=None) -> Profile:
    """Measure every conv, transposed conv and linear layer of `model` on one input of shape (C, H, W).

    energy_model: a `cdprune.EnergyModel`; with one, every layer and the network get their
        estimated energy per inference (docs/design.md, "Energy").
    """
    input_shape = tuple(int(s) for s in input_shape)
    counts: dict[str, dict] = {}

    def hook(name):
        def record(module, args, kwargs, output):
            weight = module.weight
            x = args[0] if args else kwargs["input"]
            conv = isinstance(module, CONV_TYPES)
            positions = output[0].numel() // output.shape[1] if conv else output.numel() // module.out_features
            input_positions = x.numel() // (module.in_channels if conv else module.in_features)
            # A transposed conv scatters its whole weight once per input position (torch's FLOP counter
            # counts it the same way); every other layer applies it once per output position.
            flop_positions = input_positions if conv and module.transposed else positions
            entry = counts.setdefault(name, {
                "module": module, "flops": 0, "memory_bytes": 0, "input_bytes": 0, "bytes_moved": 0,
                "positions": positions, "flop_positions": flop_positions, "output_shape": tuple(output.shape[1:]),
                "input_positions": input_positions})
            # A module called twice costs twice (shared layers), its weights read on every call.
            entry["flops"] += weight.numel() * flop_positions
            entry["memory_bytes"] += output.numel() * BYTES_PER_VALUE
            entry["input_bytes"] += x.numel() * BYTES_PER_VALUE
            own = sum(p.numel() for p in module.parameters(recurse=False))
            entry["bytes_moved"] += traffic_bytes(own, x.numel(), output.numel())
        return record

    handles = [m.register_forward_hook(hook(n), with_kwargs=True) for n, m in model.named_modules()
               if isinstance(m, CONV_TYPES + (nn.Linear,))]
    try:
        run_forward(model, input_shape)
    finally:
        for h in handles:
            h.remove()

    total_params = sum(p.numel() for p in model.parameters())
    total_flops = sum(c["flops"] for c in counts.values())
    total_memory = sum(c["memory_bytes"] for c in counts.values())
    total_bytes = sum(c["bytes_moved"] for c in counts.values())

    def energy(macs: int, moved: int) -> float | None:
        return None if energy_model is None else energy_model.mj(macs, moved)

    total_energy = energy(total_flops, total_bytes)
    if total_energy is not None and not math.isfinite(total_energy):  # JSON has no infinity, shares would be NaN
        raise CdpruneError(f"the energy model ({energy_model.describe()}) prices this network at {total_energy} mJ, "
                           "beyond the range of a number", "give coefficients in picojoules (--energy-model)")
    layers = []
    for name, c in counts.items():
        m = c["module"]
        params = sum(p.numel() for p in m.parameters(recurse=False))
        conv = isinstance(m, CONV_TYPES)
        layers.append(LayerComplexity(
            name=name, kind="conv" if conv else "linear",
            in_channels=m.in_channels if conv else m.in_features,
            out_channels=m.out_channels if conv else m.out_features,
            kernel_size=tuple(m.kernel_size) if conv else (), groups=m.groups if conv else 1,
            output_shape=c["output_shape"], positions=c["positions"], params=params, flops=c["flops"], memory_bytes=c["memory_bytes"],
            params_share=_share(params, total_params), flops_share=_share(c["flops"], total_flops),
            memory_share=_share(c["memory_bytes"], total_memory), transposed=conv and bool(m.transposed),
            flop_positions=c["flop_positions"], input_positions=c["input_positions"],
            input_bytes=c["input_bytes"], bytes_moved=c["bytes_moved"], energy_mj=energy(c["flops"], c["bytes_moved"]),
            energy_share=None if total_energy is None else _share(energy(c["flops"], c["bytes_moved"]), total_energy)))
    return Profile(input_shape, tuple(layers), Totals(total_params, total_flops, total_memory), total_energy,
                   energy_model)


def _share(value: int, total: int) -> float:
    return value / total if total else 0.0


def kernel_volume(layer: LayerComplexity) -> int:
    return math.prod(layer.kernel_size) if layer.kernel_size else 1


def architecture_id(model: nn.Module) -> str:
    """A fingerprint of the model's parameter and buffer names and shapes."""
    text = ";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

"""Static facts about each supported dataset: classes, image shape, normalisation."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CdpruneError


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    `input_shape` is (channels, height, width) in pixels; `mean` and `std`
    are per channel, on the [0, 1] pixel scale.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


_INFOS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("cifar10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        DatasetInfo("cifar100", 100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        DatasetInfo("fashion-mnist", 10, (1, 28, 28), (0.2860,), (0.3530,)),
        DatasetInfo("mnist", 10, (1, 28, 28), (0.1307,), (0.3081,)),
        DatasetInfo("synthetic", 10, (3, 32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
    )
}

DATASETS: list[str] = list(_INFOS)


def dataset_info(name: str) -> DatasetInfo:
    """Facts about dataset `name` (case-insensitive; "_" may stand for "-")."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in _INFOS:
        raise CdpruneError(f"unknown dataset '{name}': choose one of {', '.join(DATASETS)}")
    return _INFOS[key]

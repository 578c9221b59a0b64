"""What a model and a run need to know about a dataset: classes, image shape, normalisation, augmentation."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CdpruneError
from .transforms import AUGMENTATIONS, crop_padding


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a run need to know about a dataset.

    `input_shape` is (channels, height, width) in pixels; `mean` and `std`
    are per channel, on the [0, 1] pixel scale. `class_names[k]` names label k
    ("0".."K-1" where the data has no names). `augment` is the augmentation the
    training split gets when a run does not choose one (see
    `transforms.AUGMENTATIONS`); it is a property of the data, recorded here so
    that no code has to look it up by dataset name.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    augment: str = "none"

    def __post_init__(self):
        # Frozen, so defaults that depend on other fields are set through object.__setattr__.
        if not self.class_names:
            object.__setattr__(self, "class_names", tuple(str(k) for k in range(self.num_classes)))
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")

    @property
    def pad(self) -> int:
        """Zero padding, in pixels, of the random crop at this input size."""
        return crop_padding(self.input_shape)


_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The fine label names of CIFAR-100's meta file, in label order (alphabetical).
_CIFAR100_NAMES = tuple("""
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
    man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
    pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
    tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())
_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")

# Default augmentations: natural images and clothes may be mirrored, digits must not be; the
# synthetic class patterns are not mirror-symmetric. Crop padding follows the input size
# (4 pixels at 32 x 32, 2 at 28 x 28).
_INFOS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("cifar10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                    _CIFAR10_NAMES, "crop-flip"),
        DatasetInfo("cifar100", 100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                    _CIFAR100_NAMES, "crop-flip"),
        DatasetInfo("fashion-mnist", 10, (1, 28, 28), (0.2860,), (0.3530,), _FASHION_NAMES, "crop-flip"),
        DatasetInfo("mnist", 10, (1, 28, 28), (0.1307,), (0.3081,), (), "crop"),
        DatasetInfo("synthetic", 10, (3, 32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (), "crop"),
    )
}

DATASETS: list[str] = list(_INFOS)


def registered_key(name) -> str | None:
    """The registered dataset that `name` means (case-insensitive; "_" may stand for "-"), or None."""
    if not isinstance(name, str):
        return None
    key = name.strip().lower().replace("_", "-")
    return key if key in _INFOS else None


def registered_info(name: str) -> DatasetInfo:
    """Facts about registered dataset `name`."""
    key = registered_key(name)
    if key is None:
        raise CdpruneError(f"unknown dataset '{name}'", f"choose one of {', '.join(DATASETS)}")
    return _INFOS[key]

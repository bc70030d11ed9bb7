"""Datasets: CIFAR-10/100, digits as images, CIFAR-10-C corruptions and augmentation.

Images are uint8 arrays ``(N, 3, 32, 32)`` (channels first) for CIFAR and float32
``(N, 1, 8, 8)`` for the bundled digits. Files live under :func:`get_data_home`.

:func:`corrupt` implements 18 of the 19 CIFAR-10-C corruptions with the CIFAR severities;
``frost`` is left out because it needs the frost photographs that ship with the original
generator, which are not part of this package (the published ``frost.npy`` still loads with
:func:`load_cifar10c`).
"""

from ._augment import Augmenter, random_crop_flip
from ._cifar import load_cifar10, load_cifar100
from ._cifar10c import load_cifar10c, make_cifar10c
from ._corruptions import CORRUPTIONS, corrupt
from ._digits import load_digits_images
from ._home import get_data_home

__all__ = [
    "CORRUPTIONS",
    "Augmenter",
    "corrupt",
    "get_data_home",
    "load_cifar10",
    "load_cifar10c",
    "load_cifar100",
    "load_digits_images",
    "make_cifar10c",
    "random_crop_flip",
]

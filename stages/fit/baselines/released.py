"""The per-dataset search grids and initial values of the released code of Tip-Adapter, APE and ProKeR.

Values (not code) from each method's released configuration files, RN50 configs (the only ones released):
Tip-Adapter ``configs/<dataset>.yaml`` (github.com/gaopengcuhk/Tip-Adapter), APE ``configs/<dataset>.yaml``
(github.com/yangyangyang127/APE), ProKeR ``configs/RN50/configs_proker/<dataset>.yaml`` (github.com/ybendou/
ProKeR). Checked file by file against the released files where stored (Tip-Adapter dtd, eurosat, fgvc, imagenet;
APE eurosat, imagenet, oxford_pets; ProKeR food101) and against an independent harness that copies all of them.

A dataset key of the project maps to its released config (``fgvc_aircraft`` -> ``fgvc``, the ImageNet shift
sets -> ``imagenet``). Any other key (``folder``, ``digits``, synthetic sets) gets ``DEFAULT_KEY``'s config:
Caltech101, the generic object-recognition benchmark, whose ranges are also the most common among the configs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the released config an unknown dataset (your own ``folder``, ``digits``) falls back to
DEFAULT_KEY = "caltech101"
_ALIASES = {"fgvc_aircraft": "fgvc", "imagenet_v2": "imagenet", "imagenet_sketch": "imagenet",
            "imagenet_a": "imagenet", "imagenet_r": "imagenet"}


def released_key(dataset: str | None) -> str:
    """The released config a project dataset key uses (``DEFAULT_KEY`` for datasets without one)."""
    key = _ALIASES.get(dataset or "", dataset or "")
    return key if key in TIP else DEFAULT_KEY


def tip_grid(high: float, steps: int, low: float = 0.1) -> list[float]:
    """Tip-Adapter's (and APE's) search grid ``[i * (high - low) / steps + low for i in range(steps)]``."""
    return [i * (high - low) / steps + low for i in range(steps)]


@dataclass(frozen=True)
class TipConfig:
    """Tip-Adapter(-F): beta in [0.1, scale[0]) and alpha in [0.1, scale[1]) in (200, 20) steps; the initial
    (training) alpha and beta; Tip-Adapter-F's training epochs."""

    scale: tuple[float, float]
    init_alpha: float
    init_beta: float = 1.0
    epochs: int = 20
    steps: tuple[int, int] = (200, 20)

    def beta_grid(self) -> list[float]:
        return tip_grid(self.scale[0], self.steps[0])

    def alpha_grid(self) -> list[float]:
        return tip_grid(self.scale[1], self.steps[1])


@dataclass(frozen=True)
class APEConfig:
    """APE (training-free): beta, alpha grids as Tip-Adapter's, gamma in [0, scale[2]) (``i * scale / steps``);
    initial values; channels kept of RN50's 1024 (``feat_num``); criterion weights (similarity, variance)."""

    scale: tuple[float, float, float]
    steps: tuple[int, int, int]
    init_alpha: float
    feat_num: int
    weights: tuple[float, float]
    init_beta: float = 1.0
    init_gamma: float = 0.1

    def beta_grid(self) -> list[float]:
        return tip_grid(self.scale[0], self.steps[0])

    def alpha_grid(self) -> list[float]:
        return tip_grid(self.scale[1], self.steps[1])

    def gamma_grid(self) -> list[float]:
        return [i * self.scale[2] / self.steps[2] for i in range(self.steps[2])]


@dataclass(frozen=True)
class ProKeRConfig:
    """ProKeR: ``torch.linspace(*beta)`` x ``torch.linspace(*lmbda)`` (ends included, (low, high, count))."""

    beta: tuple[float, float, int]
    lmbda: tuple[float, float, int]

    def beta_grid(self) -> list[float]:
        return [float(b) for b in np.linspace(*self.beta)]

    def lmbda_grid(self) -> list[float]:
        return [float(b) for b in np.linspace(*self.lmbda)]


TIP: dict[str, TipConfig] = {
    "caltech101": TipConfig((12, 5), 3.0),
    "dtd": TipConfig((13, 13), 2.0),
    "eurosat": TipConfig((12, 10), 2.0, epochs=100),
    "fgvc": TipConfig((30, 30), 5.0),
    "food101": TipConfig((10, 10), 1.17),
    "imagenet": TipConfig((7, 3), 1.17),
    "oxford_flowers": TipConfig((50, 50), 10.0),
    "oxford_pets": TipConfig((7, 3), 1.17),
    "stanford_cars": TipConfig((20, 10), 3.0),
    "sun397": TipConfig((12, 10), 1.17),
    "ucf101": TipConfig((7, 3), 3.0),
}

_APE_STEPS = (200, 20, 20)
APE: dict[str, APEConfig] = {
    "caltech101": APEConfig((7, 7, 1), _APE_STEPS, 1.0, 800, (0.5, 0.5)),
    "dtd": APEConfig((7, 7, 1), _APE_STEPS, 3.0, 400, (0.5, 0.5)),
    "eurosat": APEConfig((30, 5, 1.5), _APE_STEPS, 1.0, 700, (0.9, 0.1)),
    "fgvc": APEConfig((20, 10, 1), _APE_STEPS, 5.0, 800, (0.1, 0.9)),
    "food101": APEConfig((7, 7, 1), _APE_STEPS, 0.8, 700, (0.3, 0.7)),
    "imagenet": APEConfig((7, 7, 0.5), (200, 20, 5), 2.0, 500, (0.7, 0.3)),
    "oxford_flowers": APEConfig((7, 7, 1), _APE_STEPS, 3.0, 700, (0.4, 0.6)),
    "oxford_pets": APEConfig((7, 7, 1), _APE_STEPS, 2.0, 800, (0.7, 0.3)),
    "stanford_cars": APEConfig((10, 7, 1), _APE_STEPS, 1.0, 500, (0.6, 0.4)),
    "sun397": APEConfig((10, 7, 1), _APE_STEPS, 1.0, 800, (0.7, 0.3)),
    "ucf101": APEConfig((10, 7, 1.5), _APE_STEPS, 2.0, 700, (0.3, 0.7)),
}
#: the feature dimension APE's channel counts were set for (RN50)
APE_RELEASED_DIM = 1024

PROKER: dict[str, ProKeRConfig] = {
    "caltech101": ProKeRConfig((0.5, 3, 20), (0.001, 1, 10)),
    "dtd": ProKeRConfig((0.1, 10, 20), (0.001, 10, 100)),
    "eurosat": ProKeRConfig((0.5, 3, 20), (0.001, 1, 100)),
    "fgvc": ProKeRConfig((0.5, 3, 20), (0.001, 1, 10)),
    "food101": ProKeRConfig((0.5, 3, 20), (0.001, 1, 10)),
    "imagenet": ProKeRConfig((1.5, 3, 10), (0.05, 0.25, 10)),
    "oxford_flowers": ProKeRConfig((0.1, 10, 20), (0.001, 10, 100)),
    "oxford_pets": ProKeRConfig((0.01, 5, 40), (0.01, 0.3, 20)),
    "stanford_cars": ProKeRConfig((0.1, 10, 5), (0.01, 1, 5)),
    "sun397": ProKeRConfig((0.1, 10, 20), (0.01, 10, 10)),
    "ucf101": ProKeRConfig((0.5, 3, 20), (0.001, 1, 10)),
}
#: ProKeR without validation data: the only fixed values its release ships (ImageNet, 16 shots)
PROKER_FIXED = {"beta": 1.7, "lmbda": 0.1}

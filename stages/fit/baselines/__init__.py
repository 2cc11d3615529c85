"""Baselines users compare CMM with, as scikit-learn estimators on cached CLIP features."""

from stages.fit.baselines.ape import APEClassifier
from stages.fit.baselines.clap import CLAPClassifier
from stages.fit.baselines.gda import GDAClassifier
from stages.fit.baselines.linear_probe import LinearProbeClassifier
from stages.fit.baselines.lp_pp import LPPlusPlusClassifier
from stages.fit.baselines.proker import ProKeRClassifier
from stages.fit.baselines.tip_adapter import TipAdapterClassifier, TipAdapterFClassifier
from stages.fit.baselines.zero_shot import ZeroShotClassifier

__all__ = ["APEClassifier", "CLAPClassifier", "GDAClassifier", "LinearProbeClassifier", "LPPlusPlusClassifier",
           "ProKeRClassifier", "TipAdapterClassifier", "TipAdapterFClassifier", "ZeroShotClassifier"]

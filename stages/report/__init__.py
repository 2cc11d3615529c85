"""Stage three: tables and plots from run records (reads records and their .npz only; never fits or encodes).

``build_report(runs_dir, out_dir)`` writes Markdown/CSV/JSON/LaTeX tables, PNG/SVG plots (when matplotlib
is installed) and an index ``README.md``. Conventions (std, incomplete cells, averages) are in ``stats``.

Packaged data: ``data/published_rn50_fewshot_top1.csv`` (columns method, backbone, dataset, shots, top1,
source) holds published ResNet-50 few-shot Top-1 accuracies, copied verbatim; each row names its source:
"APE repository, APE_results.ipynb (RN50)" (Zhu et al., APE, ICCV 2023: Zero-shot CLIP, CALIP, CoOp,
CLIP-Adapter, Tip-Adapter(-F), Tip-X, APE, APE-T) and "Tip-Adapter repository, exp.log (RN50)" (Zhang et
al., Tip-Adapter, ECCV 2022: Zero-shot CLIP, CLIP-Adapter, Tip-Adapter, Tip-Adapter-F).
"""

from stages.report.build import build_report

__all__ = ["build_report"]

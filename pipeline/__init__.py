"""Few-shot CLIP classification with Cross-Modal Mapping, from a feature cache.

Three stages share one HDF5 feature cache: ``extract`` encodes images and class
prompts once, ``fit`` trains CMM and its baselines on cached tensors, and
``report`` turns run records into tables and plots.
"""

__version__ = "0.1.0"

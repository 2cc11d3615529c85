"""The contracts the stages share, owned here once: errors, names, few-shot subsets, run records.

Imports no stage and nothing heavy (no torch, open_clip or h5py), so every stage, the cache and the CLI can use it.

- ``errors``: ``UserError`` (base of every one-line user error) and the stage error types;
- ``naming``: the one slug and the one short name per (dataset, model, weights), for caches, runs and reports;
- ``sampling``: CoOp's few-shot sampler and the subset files (extract ``--subset-shots``, fit, ``subsets``);
- ``record``: the run record (schema, path layout, atomic write, validated read), written by fit, read by
  report and predict.
"""

"""Fleets: many devices' caches.  ``sync`` brings a device's sealed blocks
upstream unchanged (sync.py, export.py, blocks.py); fleet queries run one
query over many caches on Dask (docs/fleet.md).  Nothing here imports dask
until a fleet query runs: a single cache needs none of it."""

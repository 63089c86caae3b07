"""Data: the synthetic time-evolving image-text world, img2dataset-style shards, bucketing, loading.

``world`` is the concept catalogue and its time dynamics, ``render`` draws images,
``synthetic`` samples scenes and writes datasets, ``shards`` writes/reads the shard layout.
"""

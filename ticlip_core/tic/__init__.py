"""The TiC-CLIP study (Garg et al.): CLIP trained over time buckets of timestamped image-text data.

What is TiC's own: its methods (``methods/``: Oracle, Cumulative-All/Exp/Equal, Sequential,
Restart, LwF, Patching), the per-step training job on the shared engine (``train``), the
evaluation suite after each step (``evaluate``), the runs and LR ablation (``runs``), replay
buffers (``buffers``) and its tables and figures (``tables``, ``figures``).
"""

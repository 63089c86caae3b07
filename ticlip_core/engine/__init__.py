"""The shared training engine every study runs on: the loop with hooks, resume, precision and
device switches, threads, DDP, the compute record, seeds and weight-space helpers."""

"""The ``memclip`` study: memory-efficient continual learning with CLIP, class-incremental
(CIFAR-100 10x10, ImageNet 10x100) and domain-incremental (DomainNet, six domains).

Modules: ``benchmark`` (the prepared-benchmark file format and its loading),
``synthetic_benchmark`` / ``real_benchmark`` (building one from the synthetic world or from a
real dataset), ``memory`` (the rehearsal memory), ``losses``, ``methods``, ``study`` (running
the methods over the tasks) and ``tables``.
"""

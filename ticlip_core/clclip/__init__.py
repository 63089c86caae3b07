"""The ``clclip`` study: Ding et al., "Don't Stop Learning: Towards Continual Learning for the
CLIP Model" (CL-CLIP). A CLIP model is fine-tuned on a class-labelled update task, in one
session (OST) or eight class sessions (MST), by a method that tries to keep its zero-shot
skill; it is evaluated on the update task, zero-shot classification of held-out classes and
image-text retrieval.

Modules: ``classes`` (update classes, sessions, held-out classes), ``synthetic_task`` /
``real_task`` (the crops, held-out sets and retrieval pool, in the ``task_files`` format),
``base_pool`` (the original CLIP's pre-training pool), ``towers`` (WM / IO / TO: which tower
trains), ``methods/`` (one file per method), ``session`` (training one session), ``metrics``
(UT-Acc, ZS-Acc, TR/IR@k, Bwt, A-Acc).
"""

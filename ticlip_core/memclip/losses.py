"""The two losses of the memclip study: a global contrastive loss between images and label
texts (GCL) and a class-level distributionally robust pairwise loss (GDRO).

Both are reconstructions: the paper's equations were lost in extraction and it has no public
code; the adopted forms are documented in ``docs/memclip.md``. Notation: ``s(x, t)`` is the
cosine similarity of image ``x`` and label text ``t`` (a class name's prompt through the text
encoder); a batch holds images ``i`` with labels ``y_i``; ``tau`` is the temperature. Every
loss takes ``sims`` (B, C) with ``sims[i, k] = s(x_i, t_k)`` for every class ``k`` of the
benchmark (only the columns of labels present in the batch are read), ``labels`` (B,) and
``indices`` (B,), the global train-sample indices (unique within a batch).

GCL (after SogCLR / FastCLIP), for anchors ``i`` with negatives ``N(i) = {j : y_j != y_i}``
(samples, so a class repeated among the negatives counts once per sample)::

    g_I(i) = mean_{j in N(i)} exp((s(x_i, t_{y_j}) - s(x_i, t_{y_i})) / tau)
    g_T(i) = mean_{j in N(i)} exp((s(x_j, t_{y_i}) - s(x_i, t_{y_i})) / tau)
    u_I(idx_i) <- (1 - gamma) u_I(idx_i) + gamma g_I(i)         (per train sample)
    u_T(k)     <- (1 - gamma) u_T(k) + gamma mean_{i: y_i = k} g_T(i)   (per class)
    L = tau * mean_i (g_I(i) / u_I(idx_i) + g_T(i) / u_T(y_i))   (u detached)

GDRO (after "When AUC meets DRO" and group DRO), for each class ``k`` in the batch with
positives ``P_k = {i : y_i = k}`` and negatives ``N_k``, all scored by ``t_k``::

    l(i, j; k) = max(0, m - s(x_i, t_k) + s(x_j, t_k))^2
    u_i <- (1 - gamma) u_i + gamma mean_{j in N_k} exp(l(i, j; k) / lambda_in)
    L_k = mean_{i in P_k} mean_{j in N_k} [exp(l(i, j; k) / lambda_in) / u_i] l(i, j; k)
    v_k <- (1 - gamma_v) v_k + gamma_v L_k
    L = sum_k softmax_k(v / lambda) L_k                (weights detached)

Every moving average is set to its target on its first visit; the estimators persist across
calls and tasks and travel in ``state_dict()``.
"""
from __future__ import annotations

import math

import torch

# Cosine similarities may exceed 1 by rounding (half precision); anything beyond this is not one.
_COSINE_SLACK = 2e-2  # bf16 features (8 mantissa bits) can put a cosine a few 1e-3 past 1
# exp overflows float64 above ~709.8 and float32 above ~88.7; keep a margin below each.
_MAX_EXPONENT_F64 = 700.0
_MAX_EXPONENT_F32 = 80.0


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def _check_positive(name: str, value) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_batch(sims, labels, indices, num_samples: int, num_classes: int):
    """Validate one batch; return ``labels`` and ``indices`` as int64 on ``sims``'s device."""
    if not isinstance(sims, torch.Tensor) or sims.dim() != 2 or not sims.dtype.is_floating_point:
        raise ValueError(f"sims must be a 2-D floating tensor (batch, classes), got "
                         f"{type(sims).__name__} {getattr(sims, 'shape', '')}")
    batch, columns = sims.shape
    if batch < 1:
        raise ValueError("sims holds an empty batch")
    if columns != num_classes:
        raise ValueError(f"sims has {columns} class columns, expected num_classes={num_classes}")
    out = []
    for name, t in (("labels", labels), ("indices", indices)):
        if (not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != batch
                or t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool):
            raise ValueError(f"{name} must be a 1-D integer tensor of length {batch}, got "
                             f"{type(t).__name__} {getattr(t, 'dtype', '')} {tuple(getattr(t, 'shape', ()))}")
        out.append(t.to(device=sims.device, dtype=torch.int64))
    labels, indices = out
    # one host sync for all the value checks
    detached = sims.detach()
    flags = torch.stack([
        (labels < 0).any() | (labels >= num_classes).any(),
        (indices < 0).any() | (indices >= num_samples).any(),
        ~torch.isfinite(detached).all() | (detached.abs() > 1.0 + _COSINE_SLACK).any(),
    ]).tolist()
    if flags[0]:
        raise ValueError(f"labels must lie in [0, num_classes={num_classes}), got "
                         f"min {labels.min().item()} max {labels.max().item()}")
    if flags[1]:
        raise ValueError(f"indices must lie in [0, num_samples={num_samples}), got "
                         f"min {indices.min().item()} max {indices.max().item()}")
    if torch.unique(indices).numel() != batch:  # data-dependent size: syncs on its own
        raise ValueError("indices must be unique within a batch (one train sample appears twice)")
    if flags[2]:
        raise ValueError("sims must be cosine similarities in [-1, 1] (finite); got values up to "
                         f"{detached.abs().max().item()} in magnitude -- logits scaled by the "
                         "temperature?")
    return labels, indices


class _Estimators:
    """Moving-average estimators: named value tensors, each with a boolean "seen" twin, sized
    by a constructor argument. Created lazily on the first batch's device; always detached."""

    def __init__(self, spec: dict[str, tuple[str, str, int]], dtype: torch.dtype):
        # value name -> (seen name, size argument's name, size)
        self._spec = spec
        self._dtype = dtype
        self._tensors: dict[str, torch.Tensor] | None = None

    def _fresh(self, device) -> dict[str, torch.Tensor]:
        out = {}
        for value, (seen, _, size) in self._spec.items():
            out[value] = torch.zeros(size, dtype=self._dtype, device=device)
            out[seen] = torch.zeros(size, dtype=torch.bool, device=device)
        return out

    def on(self, device) -> dict[str, torch.Tensor]:
        """The tensors, created or moved onto ``device``."""
        if self._tensors is None:
            self._tensors = self._fresh(device)
        elif next(iter(self._tensors.values())).device != torch.device(device):
            self._tensors = {k: t.to(device) for k, t in self._tensors.items()}
        return self._tensors

    def update(self, value: str, where: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
        """``u[where] <- (1 - gamma) u[where] + gamma target`` (``target`` on a first visit);
        ``where`` holds unique positions. Returns the new ``u[where]``."""
        t = self._tensors
        seen = self._spec[value][0]
        target = target.detach().to(self._dtype)
        new = torch.where(t[seen][where], (1.0 - gamma) * t[value][where] + gamma * target, target)
        t[value][where] = new
        t[seen][where] = True
        return new

    def state_dict(self) -> dict[str, torch.Tensor]:
        t = self._tensors if self._tensors is not None else self._fresh("cpu")
        return {k: v.detach().to("cpu", copy=True) for k, v in t.items()}

    def load_state_dict(self, state) -> None:
        expected = {}
        for value, (seen, size_name, size) in self._spec.items():
            expected[value] = expected[seen] = (size_name, size)
        missing = [k for k in expected if k not in state]
        if missing:
            raise ValueError(f"estimator state is missing key(s) {missing}")
        unexpected = sorted(set(state) - set(expected))
        if unexpected:
            raise ValueError(f"estimator state has unexpected key(s) {unexpected}")
        loaded = {}
        for key, (size_name, size) in expected.items():
            t = state[key]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (size,):
                raise ValueError(f"estimator state {key!r} has shape {tuple(getattr(t, 'shape', ()))}, "
                                 f"expected ({size},) for {size_name}={size}")
            is_seen = key not in self._spec
            loaded[key] = t.detach().to("cpu", dtype=torch.bool if is_seen else self._dtype, copy=True)
        self._tensors = loaded


def _class_groups(labels: torch.Tensor, dtype: torch.dtype):
    """The sorted classes of a batch, each sample's position among them, and the (K, B)
    membership matrix (a masked sum over it is a deterministic per-class reduction, unlike
    ``index_add_`` on a GPU)."""
    classes, position = torch.unique(labels, sorted=True, return_inverse=True)
    member = (position[None, :] == torch.arange(classes.numel(), device=labels.device)[:, None]).to(dtype)
    return classes, position, member


class GlobalContrastiveLoss:
    """GCL: a global contrastive loss between images and label texts (after SogCLR / FastCLIP),
    a reconstruction documented in ``docs/memclip.md``.

    ``g_I(i) = mean_{j: y_j != y_i} exp((s(x_i, t_{y_j}) - s(x_i, t_{y_i})) / tau)`` (image
    anchor) and ``g_T(i) = mean_{j: y_j != y_i} exp((s(x_j, t_{y_i}) - s(x_i, t_{y_i})) / tau)``
    (label-text anchor); the means run over samples, so same-class pairs are never negatives and
    a class repeated among the negatives counts once per sample. Estimators ``u_I`` (per train
    sample) and ``u_T`` (per class, fed the class mean of ``g_T`` over the batch) move by
    ``u <- (1 - gamma) u + gamma g`` (``u = g`` on a first visit) before the loss
    ``tau * mean_i (g_I(i) / u_I(i) + g_T(i) / u_T(y_i))`` is taken with ``u`` detached.

    The exponentials are taken in float64 (``exp(2 / tau)`` overflows float32 for CLIP's
    ``tau = 0.01``), so the estimators are float64 too; the loss comes back in float32 (or
    float64 for float64 ``sims``).
    """

    def __init__(self, num_samples: int, num_classes: int, *, tau: float, gamma: float):
        self.num_samples = _check_count("num_samples", num_samples)
        self.num_classes = _check_count("num_classes", num_classes)
        self.tau = _check_positive("tau", tau)
        if 2.0 / self.tau > _MAX_EXPONENT_F64:
            raise ValueError(f"tau={tau!r} is too small: exp(2 / tau) overflows float64 "
                             f"(need 2 / tau <= {_MAX_EXPONENT_F64:g})")
        self.gamma = _check_rate("gamma", gamma)
        self._est = _Estimators({"u_image": ("seen_image", "num_samples", self.num_samples),
                                 "u_text": ("seen_text", "num_classes", self.num_classes)},
                                torch.float64)

    def __call__(self, sims: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The GCL of one batch (a scalar), after updating the estimators of the batch's samples
        and classes. A batch of a single class has no negatives: it returns a zero connected to
        the graph and updates nothing."""
        labels, indices = _check_batch(sims, labels, indices, self.num_samples, self.num_classes)
        if bool((labels == labels[0]).all()):
            return sims.sum() * 0.0
        out_dtype = torch.promote_types(sims.dtype, torch.float32)
        x = sims.to(torch.float64)
        negative = labels[:, None] != labels[None, :]            # [i, j]: j is a negative of i
        n_neg = negative.sum(1).to(x.dtype)
        pos = x.gather(1, labels[:, None])                        # s(x_i, t_{y_i}), (B, 1)
        cross = x[:, labels]                                      # [i, j] = s(x_i, t_{y_j})
        zero = x.new_zeros(())
        g_image = torch.where(negative, torch.exp((cross - pos) / self.tau), zero).sum(1) / n_neg
        g_text = torch.where(negative, torch.exp((cross.T - pos) / self.tau), zero).sum(1) / n_neg

        self._est.on(x.device)
        u_image = self._est.update("u_image", indices, g_image, self.gamma)
        classes, position, member = _class_groups(labels, x.dtype)
        class_g_text = (member * g_text.detach()[None, :]).sum(1) / member.sum(1)
        u_text = self._est.update("u_text", classes, class_g_text, self.gamma)[position]

        loss = self.tau * (g_image / u_image + g_text / u_text).mean()
        return loss.to(out_dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The estimators as CPU tensors: ``u_image``, ``seen_image`` (num_samples,) and
        ``u_text``, ``seen_text`` (num_classes,)."""
        return self._est.state_dict()

    def load_state_dict(self, state) -> None:
        """Restore the estimators of :meth:`state_dict`; a missing or unexpected key or a shape
        other than (num_samples,) / (num_classes,) is a ValueError naming the key."""
        self._est.load_state_dict(state)


class GroupDROLoss:
    """GDRO: a class-level distributionally robust pairwise loss (after "When AUC meets DRO"
    and group DRO), a reconstruction documented in ``docs/memclip.md``.

    For each class ``k`` of the batch, positives ``P_k = {i : y_i = k}`` and negatives ``N_k``
    (the others) are scored by ``t_k`` and paired through the squared hinge
    ``l(i, j; k) = max(0, m - s(x_i, t_k) + s(x_j, t_k))^2``. Inner robust average (LibAUC's
    pAUC_DRO): ``u_i <- (1 - gamma) u_i + gamma mean_{j in N_k} exp(l / lambda_in)`` per
    positive sample, ``p_ij = exp(l / lambda_in) / u_i`` (detached) and
    ``L_k = mean_{i in P_k} mean_{j in N_k} p_ij l(i, j; k)``; ``lam_in=None`` means
    ``lambda_in = inf``: ``p_ij = 1`` and no ``u`` update. Outer robust average over classes:
    ``v_k <- (1 - gamma_v) v_k + gamma_v L_k`` and the loss ``sum_k w_k L_k`` with
    ``w = softmax(v[present] / lam)`` (detached). First visits set ``u`` and ``v`` to their
    targets. ``last_class_weights`` holds the last call's ``{class: w_k}``.

    Computed in float32 (float64 for float64 ``sims``); the constructor refuses constants for
    which ``exp((margin + 2)^2 / lam_in)``, the largest exponential, would overflow float32.
    """

    def __init__(self, num_samples: int, num_classes: int, *, margin: float, lam: float,
                 lam_in: float | None, gamma: float, gamma_v: float):
        self.num_samples = _check_count("num_samples", num_samples)
        self.num_classes = _check_count("num_classes", num_classes)
        if (isinstance(margin, bool) or not isinstance(margin, (int, float))
                or not math.isfinite(margin) or margin < 0):
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        self.margin = float(margin)
        self.lam = _check_positive("lam", lam)
        self.lam_in = None if lam_in is None else _check_positive("lam_in", lam_in)
        if self.lam_in is not None and (self.margin + 2.0) ** 2 / self.lam_in > _MAX_EXPONENT_F32:
            raise ValueError(f"margin={margin!r}, lam_in={lam_in!r}: exp((margin + 2)^2 / lam_in) = "
                             f"exp({(self.margin + 2.0) ** 2 / self.lam_in:.4g}) overflows float32 "
                             f"(need (margin + 2)^2 / lam_in <= {_MAX_EXPONENT_F32:g})")
        self.gamma = _check_rate("gamma", gamma)
        self.gamma_v = _check_rate("gamma_v", gamma_v)
        self.last_class_weights: dict[int, float] = {}
        self._est = _Estimators({"u_pos": ("seen_pos", "num_samples", self.num_samples),
                                 "v_class": ("seen_class", "num_classes", self.num_classes)},
                                torch.float32)

    def __call__(self, sims: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The GDRO loss of one batch (a scalar), after updating the estimators of its positive
        samples and classes. A batch of a single class has no negatives: it returns a zero
        connected to the graph, updates nothing and leaves ``last_class_weights`` empty."""
        labels, indices = _check_batch(sims, labels, indices, self.num_samples, self.num_classes)
        if bool((labels == labels[0]).all()):
            self.last_class_weights = {}
            return sims.sum() * 0.0
        x = sims.to(torch.promote_types(sims.dtype, torch.float32))
        negative = labels[:, None] != labels[None, :]           # [i, j]: j is a negative of y_i
        n_neg = negative.sum(1).to(x.dtype)
        pos = x.gather(1, labels[:, None])                       # s(x_i, t_{y_i}), (B, 1)
        neg = x[:, labels].T                                     # [i, j] = s(x_j, t_{y_i})
        zero = x.new_zeros(())
        hinge = torch.where(negative, torch.clamp(self.margin - pos + neg, min=0.0) ** 2, zero)

        self._est.on(x.device)
        if self.lam_in is None:
            weighted = hinge
        else:
            e = torch.exp(hinge.detach() / self.lam_in)
            g = torch.where(negative, e, zero).sum(1) / n_neg
            u = self._est.update("u_pos", indices, g, self.gamma).to(x.dtype)
            weighted = (e / u[:, None]) * hinge
        per_positive = torch.where(negative, weighted, zero).sum(1) / n_neg
        classes, _, member = _class_groups(labels, x.dtype)
        class_loss = (member * per_positive[None, :]).sum(1) / member.sum(1)
        v = self._est.update("v_class", classes, class_loss, self.gamma_v).to(x.dtype)
        w = torch.softmax(v / self.lam, dim=0)
        self.last_class_weights = dict(zip(classes.tolist(), w.tolist()))
        return (w * class_loss).sum()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The estimators as CPU tensors: ``u_pos``, ``seen_pos`` (num_samples,) and
        ``v_class``, ``seen_class`` (num_classes,)."""
        return self._est.state_dict()

    def load_state_dict(self, state) -> None:
        """Restore the estimators of :meth:`state_dict`; a missing or unexpected key or a shape
        other than (num_samples,) / (num_classes,) is a ValueError naming the key."""
        self._est.load_state_dict(state)

import logging

from ticlip_core.clclip.methods import register
from ticlip_core.engine.method import Method
from ticlip_core.clclip.distill import count_forwards, beta_of, seen_class_features, teacher_from, teacher_seen_class_features

log = logging.getLogger(__name__)

_SMALL_ANGLE = 1e-6


class GeodesicFailure(RuntimeError):
    """The geodesic flow kernel could not be computed (non-finite result)."""


def subspace(features, dim: int):
    """An orthonormal (D, dim) basis of the span of the top ``dim`` right singular vectors of the
    (n, D) feature matrix ``features``: the subspace P of Eq. 6 (no centring)."""
    import torch

    _, _, vh = torch.linalg.svd(features, full_matrices=False)
    return vh[:dim].T


def geodesic_flow_kernel(p_old, p_new):
    """Q = the geodesic flow kernel from subspace ``p_old`` to ``p_new`` (Eq. 6-7), both (D, d).

    Closed form of Gong et al. (CVPR 2012): P_old^T P_new = U1 Γ V^T, R^T P_new = -U2 Σ V^T with
    R the orthogonal complement of P_old, θ = arccos γ, and
    Q = [P_old U1, R U2] [[Λ1, Λ2], [Λ2, Λ3]] [P_old U1, R U2]^T,
    Λ1 = 1 + sin 2θ / 2θ, Λ2 = (cos 2θ - 1) / 2θ, Λ3 = 1 - sin 2θ / 2θ (limits 2, 0, 0 as θ -> 0).
    This Q is 2 * ∫_0^1 Π(ν) Π(ν)^T dν; the factor is irrelevant to the normalised Eq. 9-10.
    R is never formed: R U2 = -(I - P_old P_old^T) P_new V Σ^-1, whose columns are only needed
    where Σ > 0 (Λ2 = Λ3 = 0 where θ = 0). Raises ``GeodesicFailure`` if Q is not finite.
    """
    import torch

    u1, gamma, vh = torch.linalg.svd(p_old.T @ p_new)
    gamma = gamma.clamp(0.0, 1.0)
    theta = torch.arccos(gamma)
    sigma = torch.sin(theta)
    a = p_old @ u1                                   # P_old U1
    residual = p_new @ vh.mT - a * gamma             # (I - P_old P_old^T) P_new V
    b = torch.where(sigma > _SMALL_ANGLE, -residual / sigma.clamp_min(_SMALL_ANGLE), torch.zeros_like(residual))
    small = theta < _SMALL_ANGLE
    two_theta = torch.where(small, torch.ones_like(theta), 2 * theta)
    lam1 = torch.where(small, torch.full_like(theta, 2.0), 1 + torch.sin(two_theta) / two_theta)
    lam2 = torch.where(small, torch.zeros_like(theta), (torch.cos(two_theta) - 1) / two_theta)
    lam3 = torch.where(small, torch.zeros_like(theta), 1 - torch.sin(two_theta) / two_theta)
    q = (a * lam1) @ a.T + (a * lam2) @ b.T + (b * lam2) @ a.T + (b * lam3) @ b.T
    if not torch.isfinite(q).all():
        raise GeodesicFailure("the geodesic flow kernel has non-finite entries")
    return q


def default_subspace_dim(n: int, dim: int) -> int:
    """The default subspace dimension for an (n, dim) feature matrix: min(n, dim) // 2, at least 1."""
    return max(1, min(n, dim) // 2)


def geodesic_loss(z_new, z_old, subspace_dim: int | None = None):
    """-mean_i z_new_i^T Q z_old_i / (||Q^1/2 z_new_i|| ||Q^1/2 z_old_i||): Eq. 9 (image) or 10 (text).

    ``z_new``, ``z_old``: (n, D) features of the same n inputs from the new and the old model. Q
    (Eq. 7) is computed in float64 from detached features of both, between their top
    ``subspace_dim``-dimensional subspaces (default ``default_subspace_dim``; clamped to
    min(n, D)); gradients flow through ``z_new`` only. Raises ``torch.linalg.LinAlgError`` or
    ``GeodesicFailure`` when the kernel cannot be computed.
    """
    import torch

    n, dim = z_new.shape
    d = min(subspace_dim or default_subspace_dim(n, dim), n, dim)
    old = z_old.detach().float()
    with torch.no_grad():
        q = geodesic_flow_kernel(subspace(old.double(), d), subspace(z_new.detach().double(), d)).float()
    new = z_new.float()
    q_old = old @ q                                   # Q is symmetric
    inner = (new * q_old).sum(-1)
    norm_new = ((new @ q) * new).sum(-1).clamp_min(1e-12).sqrt()
    norm_old = (q_old * old).sum(-1).clamp_min(1e-12).sqrt()
    return -(inner / (norm_new * norm_old)).mean()


@register
class GeoDL(Method):
    """GeoDL distillation: cross-entropy + beta * (L_i + L_t), geodesic similarity of old/new features (Eq. 6-10).

    Only GeoDL's distillation is used (no replay), on both towers' embeddings: L_i (Eq. 9) on the
    batch's image features and L_t (Eq. 10) on the text features of every seen class's prompts
    (current and previous sessions in MST), each with its own kernel Q_i, Q_t (Eq. 7) between the
    old and new feature subspaces. The old model is ``ctx.previous_state`` (the original CLIP in
    OST, the previous session's model in MST). Options: ``beta`` (default 1.0, tuned on
    validation A-Acc) and ``subspace_dim`` (default min(rows, D) // 2 per feature matrix).

    A term whose kernel cannot be computed (SVD failure, non-finite Q) is not dropped: that batch
    falls back to plain cosine similarity for it, counted in ``ctx.info["geodl_fallbacks"]`` and
    logged as a warning.
    """

    name = "geodl"
    study = "clclip"
    hyperparameter = "beta"
    defaults = {"beta": 1.0, "subspace_dim": None}

    def before_step(self, ctx):
        import torch

        self.beta = beta_of(self)
        dim = self.options["subspace_dim"]
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise ValueError(f"geodl: subspace_dim must be a positive integer or null, got {dim!r}")
        self.teacher = teacher_from(ctx.previous_state, ctx)
        self.teacher_classes = teacher_seen_class_features(self.teacher, ctx)
        self.device_type = torch.device(ctx.device).type
        ctx.info["beta"] = self.beta
        ctx.info.setdefault("geodl_fallbacks", 0)

    def _term(self, ctx, z_new, z_old, which: str):
        import torch
        import torch.nn.functional as F

        try:
            return geodesic_loss(z_new, z_old, self.options["subspace_dim"])
        except (torch.linalg.LinAlgError, GeodesicFailure) as err:
            ctx.info["geodl_fallbacks"] = ctx.info.get("geodl_fallbacks", 0) + 1
            log.warning("geodl: geodesic kernel failed for the %s features (%s); using cosine similarity for "
                        "this batch (%d fallbacks so far)", which, err, ctx.info["geodl_fallbacks"])
            return -F.cosine_similarity(z_new.float(), z_old.detach().float(), dim=-1).mean()

    def extra_loss(self, ctx, batch, out):
        images, class_features = batch.images, out["class_features"]
        import torch

        with torch.no_grad():
            old_images = self.teacher(images, None)["image_features"]
        count_forwards(ctx, images=len(images))
        new_classes = seen_class_features(ctx, class_features)
        # the kernel and the loss are computed in float32/float64, outside any autocast region
        with torch.autocast(self.device_type, enabled=False):
            image_term = self._term(ctx, out["image_features"], old_images, "image")
            text_term = self._term(ctx, new_classes, self.teacher_classes, "text")
        return self.beta * (image_term + text_term)

    def after_step(self, ctx):
        self.teacher = self.teacher_classes = None

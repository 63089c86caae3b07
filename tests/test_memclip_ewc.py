"""memclip's EWC baseline (ticlip_core/memclip/methods/ewc.py): the diagonal Fisher is the mean of
squared per-batch gradients (clamped), old and new Fisher blend as PyCIL's, the penalty is
lamda/2 * sum F (theta - theta*)^2, zero at the anchor, and survives a state round trip."""
import types

import pytest
import torch
import torch.nn.functional as F

from ticlip_core.memclip.methods import get_method
from ticlip_core.memclip.methods.ewc import blend_fisher, ewc_penalty, fisher_diagonal


class Tiny(torch.nn.Module):
    """A linear classifier with a (frozen) temperature, named as CLIP's."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0), requires_grad=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.75, -0.5]]))
            self.fc.bias.copy_(torch.tensor([0.1, -0.2]))


BATCHES = [(torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 1.0]]), torch.tensor([0, 1])),
           (torch.tensor([[-1.0, 2.0, 0.0]]), torch.tensor([1]))]


def _hand_gradients(model, x, y):
    """d mean-CE / d (W, b) of a linear layer: (softmax - onehot)^T x / B and its column mean."""
    p = torch.softmax(x @ model.fc.weight.detach().T + model.fc.bias.detach(), dim=1)
    delta = p - F.one_hot(y, 2).float()
    return delta.T @ x / len(y), delta.mean(dim=0)


def _ce(model):
    return lambda batch: F.cross_entropy(model.fc(batch[0]), batch[1])


def test_the_fisher_is_the_mean_of_squared_per_batch_gradients():
    model = Tiny()
    params = {"fc.weight": model.fc.weight, "fc.bias": model.fc.bias}
    fisher = fisher_diagonal(params, BATCHES, _ce(model))
    grads = [_hand_gradients(model, x, y) for x, y in BATCHES]
    expected_w = (grads[0][0] ** 2 + grads[1][0] ** 2) / 2
    expected_b = (grads[0][1] ** 2 + grads[1][1] ** 2) / 2
    torch.testing.assert_close(fisher["fc.weight"], expected_w)
    torch.testing.assert_close(fisher["fc.bias"], expected_b)
    assert (expected_w > 0).any()
    cap = float(expected_w.max()) / 2  # PyCIL's fishermax clamp
    clamped = fisher_diagonal(params, BATCHES, _ce(model), max_value=cap)
    torch.testing.assert_close(clamped["fc.weight"], expected_w.clamp(max=cap))
    assert clamped["fc.weight"].max() == pytest.approx(cap)


def test_old_and_new_fisher_blend_with_the_share_of_old_classes():
    old = {"w": torch.tensor([1.0, 0.0, 4.0])}
    new = {"w": torch.tensor([0.0, 2.0, 1.0])}
    blended = blend_fisher(old, new, alpha=0.75)  # 3 old classes of 4 seen
    torch.testing.assert_close(blended["w"], torch.tensor([0.75, 0.5, 3.25]))
    first = blend_fisher(None, new, alpha=0.0)
    torch.testing.assert_close(first["w"], new["w"])
    assert first["w"] is not new["w"]


def test_the_penalty_is_half_lamda_times_the_fisher_weighted_squared_distance():
    anchor = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.0]])}
    fisher = {"a": torch.tensor([0.5, 2.0]), "b": torch.tensor([[3.0]])}
    params = {"a": torch.tensor([2.0, 0.0]), "b": torch.tensor([[1.0]])}
    # 10 / 2 * (0.5 * 1 + 2 * 4 + 3 * 1) = 5 * 11.5
    assert float(ewc_penalty(params, anchor, fisher, lamda=10.0)) == pytest.approx(57.5)
    assert float(ewc_penalty(anchor, anchor, fisher, lamda=10.0)) == 0.0


@torch.no_grad()
def test_the_method_penalty_is_zero_at_the_anchor_grows_away_and_survives_a_resume():
    model = Tiny()
    method = get_method("ewc", lamda=100.0)
    assert method.penalty(model) == 0.0  # no task has ended yet
    params = {"fc.weight": model.fc.weight, "fc.bias": model.fc.bias}
    with torch.enable_grad():
        fisher = fisher_diagonal(params, BATCHES, _ce(model))
    method.consolidate(model, fisher, alpha=0.0)
    assert "logit_scale" not in method.anchor and "logit_scale" not in method.state_dict()["fisher"]
    assert float(method.penalty(model)) == 0.0
    values = []
    for step in (0.1, 0.2, 0.4):
        moved = Tiny()
        moved.fc.weight.add_(step)
        moved.fc.bias.sub_(step)
        values.append(float(method.penalty(moved)))
    assert 0 < values[0] < values[1] < values[2]
    assert values[1] == pytest.approx(4 * values[0])  # quadratic in the distance

    resumed = get_method("ewc", lamda=100.0)
    resumed.load_state_dict(method.state_dict())
    resumed.before_step(types.SimpleNamespace(model=moved, device="cpu"))
    assert float(resumed.penalty(moved)) == pytest.approx(values[2], rel=1e-6)
    # a second consolidation blends with the restored Fisher as in the uninterrupted method
    new = {n: torch.ones_like(f) for n, f in method.fisher.items()}
    method.consolidate(moved, new, alpha=0.5)
    resumed.consolidate(moved, new, alpha=0.5)
    for n in method.fisher:
        torch.testing.assert_close(resumed.fisher[n], method.fisher[n])


def test_ewc_is_declared_for_the_class_scenario_with_memory_and_the_label_text():
    method = get_method("ewc")
    assert method.scenarios == ("class",) and method.uses_memory and method.uses_text
    assert method.options == {"lamda": 1000.0, "fisher_max": 1e-4}
    assert method.scorer(types.SimpleNamespace()) is None

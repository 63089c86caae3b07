"""Each method's data selection, initialisation and budget, and the registry itself."""
import pytest

from ticlip_core.registry import unregister
from ticlip_core.tic.methods import available_methods, get_method, register
from ticlip_core.engine.method import Method

STEPS = ["2014-2016", "2017", "2018", "2019"]


def test_registry_has_the_foundation_methods():
    assert {"oracle", "restart", "sequential", "cumulative_all"} <= set(available_methods())


def test_unknown_method_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown TiC method 'nope'.*oracle"):
        get_method("nope")


@pytest.mark.parametrize("name, t, data, budget, warm", [
    ("oracle", 0, ["2014-2016"], 100, False),
    ("oracle", 2, ["2014-2016", "2017", "2018"], 300, False),
    ("restart", 2, ["2014-2016", "2017", "2018"], 100, False),
    ("sequential", 2, ["2018"], 100, True),
    ("cumulative_all", 3, STEPS, 100, True),
])
def test_data_plan_budget_and_init(name, t, data, budget, warm):
    m = get_method(name)
    plan = m.data_plan(t, STEPS)
    assert list(plan) == data
    assert all(v is None for v in plan.values())  # all of each step's data
    assert m.budget(t, 100) == budget
    assert m.warm_start is warm


def test_a_new_method_is_one_class():
    @register
    class HalfBudget(Method):
        """Test-only method."""
        name = "half_budget_test"
        study = "tic"
        def budget(self, t, base_budget):
            return base_budget // 2
    try:
        assert get_method("half_budget_test").budget(0, 10) == 5
        with pytest.raises(ValueError, match="registered twice"):
            register(type("Other", (Method,), {"name": "half_budget_test", "study": "tic"}))
    finally:
        unregister("tic", "half_budget_test")


def test_a_method_paired_with_a_scenario_it_does_not_support_is_refused_naming_the_key():
    from ticlip_core.registry import check_methods

    with pytest.raises(ValueError, match=r"clclip.methods: CL-CLIP method 'joint_ft' supports only mst, not ost"):
        check_methods("clclip", ["ft", "joint_ft"], "clclip.methods", ["ost"])
    check_methods("clclip", ["ft", "joint_ft"], "clclip.methods", ["ost", "mst"])  # runs in MST: accepted
    with pytest.raises(ValueError, match="unknown TiC method"):
        check_methods("tic", ["vr_lwf"], "tic.methods")  # another study's method


def test_every_registered_method_declares_its_study_and_refuses_unknown_options():
    from ticlip_core.registry import available_methods, method_class

    for study in ("tic", "clclip"):
        for name in available_methods(study):
            cls = method_class(study, name)
            assert cls.study == study and cls.name == name
            with pytest.raises(TypeError, match="unknown option"):
                cls(not_an_option=1)


def test_every_plain_first_step_method_trains_step_0_bit_identically(tiny_world, tmp_path):
    """What lets the workflow train the first step once and copy it (rule share_first_step)."""
    import torch

    from conftest import micro_config
    from ticlip_core.data.bucketing import step_shards
    from ticlip_core.tic.train import train_step

    cfg = micro_config(budget_samples=32, batch_size=16, warmup_iterations=1)
    steps = cfg["tic"]["steps"]
    shards = {s: step_shards(tiny_world / "steps", s, "train") for s in steps}
    val = {s: step_shards(tiny_world / "steps", s, "val") for s in steps}
    plain = [m for m in available_methods() if get_method(m).plain_first_step]
    assert {"oracle", "sequential", "cumulative_all", "cumulative_exp", "lwf", "patching"} <= set(plain)
    weights = {}
    for m in plain:
        train_step(cfg, method_name=m, step=steps[0], shards_by_step=shards, val_shards_by_step=val,
                   init_checkpoint=None, out_model=str(tmp_path / f"{m}.pt"), out_log=str(tmp_path / f"{m}.csv"),
                   out_compute=str(tmp_path / f"{m}.json"))
        weights[m] = torch.load(tmp_path / f"{m}.pt", weights_only=True)
    ref = weights["sequential"]
    for m, w in weights.items():
        assert w.keys() == ref.keys() and all(torch.equal(w[k], ref[k]) for k in ref), m

"""The synthetic world measurably drifts: a model trained on the first step only retrieves
far above chance on that step and clearly worse on the last step."""
import pytest
import torch

from conftest import micro_config
from ticlip_core.data.bucketing import assign_steps, parse_steps, step_shards, write_step_shards
from ticlip_core.data.shards import read_shard_metadata
from ticlip_core.data.synthetic import synthesize_world
from ticlip_core.tic.evaluate import encode_eval_set, recall_at_k
from ticlip_core.models import create_model, load_checkpoint
from ticlip_core.tic.train import train_step

POOL = 100
MARGIN = 0.8  # last-step Recall@1 must be at most 80% of the first step's (measured: 0.51)


@pytest.fixture(scope="module")
def first_step_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    synthesize_world(root / "shards", seed=1, years=(2014, 2021), samples_per_year=400, samples_per_shard=400,
                     workers=2)
    steps = parse_steps(["2014-2016", "2021"])  # 2017-2020 are counted as outside the steps
    assigned = assign_steps(read_shard_metadata(root / "shards"), steps, 0.0, 0.3)
    write_step_shards(assigned, root / "shards", root / "steps", 500)
    cfg = micro_config(budget_samples=16000, batch_size=64, lr=0.002, warmup_iterations=10, shuffle_buffer=500,
                       log_every=50)
    cfg["model"]["name"] = "ticlip-vit-tiny"
    cfg["tic"]["steps"] = ["2014-2016", "2021"]
    train_step(cfg, method_name="sequential", step="2014-2016",
               shards_by_step={"2014-2016": step_shards(root / "steps", "2014-2016", "train")},
               init_checkpoint=None, out_model=str(root / "m.pt"), out_log=str(root / "log.csv"),
               out_compute=str(root / "c.json"))
    return root


def test_retrieval_drops_from_first_to_last_step(first_step_model):
    root = first_step_model
    torch.set_num_threads(1)
    model, _, _, tokenizer = create_model("ticlip-vit-tiny")
    load_checkpoint(model, root / "m.pt").eval()
    r1 = {}
    for step in ("2014-2016", "2021"):
        enc = encode_eval_set(model, tokenizer, step_shards(root / "steps", step, "test"), 256, torch.device("cpu"))
        assert len(enc.meta) >= POOL
        r1[step] = recall_at_k(enc.image_features, enc.text_features, [1], POOL)["mean_R@1"]
    chance = 1 / POOL
    print(f"Recall@1 first step {r1['2014-2016']:.3f}, last step {r1['2021']:.3f}, chance {chance:.4f}")
    assert r1["2014-2016"] > 4 * chance  # measured: 12x (0.117 vs chance 0.010)
    assert r1["2021"] < MARGIN * r1["2014-2016"]

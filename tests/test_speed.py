"""The GPU fast-path switches: each trains, and those that should not change the maths do not."""
import pytest
import torch

from conftest import micro_config
from ticlip_core.data.bucketing import step_shards
from ticlip_core.tic.train import train_step


def _weights(tiny_world, tmp_path, tag, **switches):
    cfg = micro_config(budget_samples=48, batch_size=16, warmup_iterations=1, **switches)
    shards = {"2014": step_shards(tiny_world / "steps", "2014", "train")}
    out = train_step(cfg, method_name="sequential", step="2014", shards_by_step=shards, init_checkpoint=None,
                     out_model=str(tmp_path / f"{tag}.pt"), out_log=str(tmp_path / f"{tag}.csv"),
                     out_compute=str(tmp_path / f"{tag}.json"))
    assert out["samples_seen"] == 48
    return torch.load(tmp_path / f"{tag}.pt", weights_only=True)


@pytest.fixture(scope="module")
def plain(tiny_world, tmp_path_factory):
    return _weights(tiny_world, tmp_path_factory.mktemp("plain"), "plain")


def test_gradient_checkpointing_gives_the_same_weights(tiny_world, tmp_path, plain):
    ckpt = _weights(tiny_world, tmp_path, "ckpt", grad_checkpointing=True)
    assert all(torch.allclose(plain[k], ckpt[k], rtol=0, atol=1e-6) for k in plain)


def test_channels_last_gives_the_same_weights(tiny_world, tmp_path, plain):
    nhwc = _weights(tiny_world, tmp_path, "nhwc", channels_last=True)
    assert all(torch.allclose(plain[k], nhwc[k], rtol=0, atol=1e-5) for k in plain)


def test_bf16_autocast_trains_with_float32_weights(tiny_world, tmp_path, plain):
    bf16 = _weights(tiny_world, tmp_path, "bf16", precision="bf16")
    assert all(v.dtype == plain[k].dtype for k, v in bf16.items())
    assert all(torch.isfinite(v.float()).all() for v in bf16.values())
    # lower-precision forward passes: close to the float32 run, but not the same
    diffs = [(bf16[k].float() - plain[k].float()).abs().max().item() for k in plain if plain[k].is_floating_point()]
    assert 0 < max(diffs) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_all_fast_paths_on_cuda(tiny_world, tmp_path):
    w = _weights(tiny_world, tmp_path, "cuda", precision="bf16", tf32=True, channels_last=True, compile=True,
                 grad_checkpointing=True)
    assert all(torch.isfinite(v.float()).all() for v in w.values())


def test_foreach_adamw_is_bit_identical_to_the_per_tensor_loop():
    from ticlip_core.engine.speed import adamw

    def train(make):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(300, 8)), torch.nn.Parameter(torch.randn(8))]
        opt = make([{"params": params[:1]}, {"params": params[1:], "lr": 0.1}])
        gen = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        return params, opt

    fast, fast_opt = train(lambda groups: adamw(groups, 1e-3, 0.1))
    slow, _ = train(lambda groups: torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.1, foreach=False))
    assert fast_opt.defaults["foreach"] is True
    assert all(torch.equal(a, b) for a, b in zip(fast, slow))
    assert not torch.equal(fast[0], torch.zeros_like(fast[0]))

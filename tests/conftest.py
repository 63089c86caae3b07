"""Shared fixtures: a tiny synthetic world, bucketed, and a validated micro config."""
import os
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

ROOT = Path(__file__).resolve().parents[1]
# img2dataset imports albumentations, which would ask PyPI for a newer version of itself
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def micro_config(**train) -> dict:
    """The micro config (configs/micro.yaml) validated, defaults filled, ``train`` overrides applied."""
    cfg = yaml.safe_load((ROOT / "configs/micro.yaml").read_text())
    validate(cfg, str(ROOT / "ticlip_core/schemas/config.schema.yaml"))
    cfg["train"].update(train)
    return cfg


class LoopbackImageServer:
    """Serves ``files`` (path -> bytes, as JPEG) on 127.0.0.1; any other path is a 404. Logs the
    paths asked in ``requests``. ``url`` is its base address; ``close()`` stops it."""

    def __init__(self, files: dict[str, bytes]):
        import http.server
        import threading

        self.files, self.requests = files, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def run_together(commands: dict[str, list[str]], timeout: int = 300) -> dict[str, tuple[int, str]]:
    """Run ``commands`` (name -> argv) at once; name -> (exit code, stdout + stderr)."""
    import subprocess
    import tempfile

    procs = {}
    for name, cmd in commands.items():
        out = tempfile.TemporaryFile(mode="w+")
        procs[name] = (subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True), out)
    results = {}
    for name, (proc, out) in procs.items():
        code = proc.wait(timeout=timeout)
        out.seek(0)
        results[name] = (code, out.read())
        out.close()
    return results


def planned_jobs(command: list[str], overlays: dict[str, dict], tmp_path: Path) -> dict[str, dict[str, int]]:
    """For each named ``overlay``, the jobs (rule -> count, the target rule ``all`` left out) that a
    dry-run of ``command`` plans with it given as one more config file: what that config edit
    would rerun. The dry-runs run at once."""
    at = command.index("--cores")  # config files come before --cores in the tests' commands
    commands = {}
    for i, (name, overlay) in enumerate(overlays.items()):
        path = tmp_path / f"overlay_{i}.yaml"
        path.write_text(yaml.safe_dump(overlay))
        commands[name] = [*command[:at], str(path), *command[at:], "--dry-run", "--quiet", "rules"]
    planned = {}
    for name, (code, out) in run_together(commands).items():
        assert code == 0, out[-3000:]
        jobs = {}
        if "Nothing to be done" not in out:
            for line in out.split("Job stats:")[1].split("total")[0].splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    jobs[parts[0]] = int(parts[1])
        jobs.pop("all", None)
        planned[name] = jobs
    return planned


@pytest.fixture
def one_torch_thread():
    """One torch thread during the test, as a memclip job runs (``train.threads`` 1): tiny tensors
    gain nothing from two, and two test workers on two cores would otherwise fight over four."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """Shards of a 3-year world and their per-step splits (the micro config's steps)."""
    from ticlip_core.data.bucketing import assign_steps, parse_steps, write_step_shards
    from ticlip_core.data.shards import read_shard_metadata
    from ticlip_core.data.synthetic import synthesize_world

    root = tmp_path_factory.mktemp("world")
    cfg = micro_config()
    synthesize_world(root / "shards", seed=0, years=(2014, 2016), samples_per_year=120, samples_per_shard=60)
    steps = parse_steps(cfg["tic"]["steps"])
    assigned = assign_steps(read_shard_metadata(root / "shards"), steps, 0.05, 0.1)
    write_step_shards(assigned, root / "shards", root / "steps", 50)
    return root


# The longest modules first: with pytest-xdist (`make test` runs `-n auto --dist loadfile
# --no-loadscope-reorder`; without that flag xdist re-sorts files by their number of tests, which put
# these few-test, long-setup files last) they start at once on separate workers instead of finishing last.
LONGEST_FIRST = ["test_workflow.py", "test_slurm.py", "test_clclip_study.py", "test_memclip_study.py", "test_download.py",
                 "test_faults_kill.py", "test_faults_kill_clclip.py", "test_ddp.py", "test_drift.py", "test_faults_download.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order

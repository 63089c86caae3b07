"""Config checks the JSON schema cannot express, run while Snakemake builds the DAG.

Each failure raises ``ValueError`` (``FileNotFoundError`` for a missing file) naming the key and
the reason, so a bad config fails before any job runs instead of hours later. Nothing here imports torch or open_clip unless the config
names an open_clip pretrained tag (only open_clip's registry can say whether it exists).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"


def check_config(config: dict) -> None:
    """Every cross-key and registry check of ``config`` (already schema-validated, defaults filled)."""
    check_split(config["data"]["split"], "data.split")
    check_model(config["model"], "model")
    if config["clclip"]["enabled"]:
        check_model(config["clclip"]["model"], "clclip.model")
        check_clclip_method_options(config["clclip"]["method_options"])
    if config["memclip"]["enabled"]:
        check_memclip(config)


def check_split(split: dict, key: str) -> None:
    """Validation and test fractions must leave samples to train on: ``val + test < 1``."""
    total = split["val_fraction"] + split["test_fraction"]
    if total >= 1:
        raise ValueError(f"{key}: val_fraction + test_fraction = {total:g} leaves no training samples; "
                         "their sum must be below 1")


def _model_config_dirs() -> list[Path]:
    """Where model config JSONs live: this project's ``model_configs/``, then open_clip's."""
    spec = importlib.util.find_spec("open_clip")
    dirs = [MODEL_CONFIG_DIR]
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(list(spec.submodule_search_locations)[0]) / "model_configs")
    return dirs


def known_model_names() -> set[str]:
    """Names of every open_clip model config (the package's and this project's), read from their
    JSON files without importing open_clip."""
    return {p.stem for d in _model_config_dirs() for p in d.glob("*.json")}


def model_config(name: str) -> dict:
    """The config JSON of the open_clip model ``name`` (this project's or open_clip's), read
    without importing open_clip. Raises ``ValueError`` for a name with no config file."""
    for folder in _model_config_dirs():
        path = folder / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    raise ValueError(f"unknown open_clip model '{name}'")


def model_image_size(name: str) -> int:
    """Input resolution (pixels per side) of the open_clip model ``name``, from its config."""
    size = model_config(name)["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def is_local_checkpoint(pretrained: str | None) -> bool:
    """Whether ``model.pretrained`` names a file (a path, or a checkpoint suffix) rather than a tag."""
    return pretrained is not None and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors")))


def check_model(model: dict, key: str) -> None:
    """``name`` must be an open_clip model (or ``hf-hub:`` id); ``pretrained`` a local file or a tag
    open_clip knows for that model."""
    name, pretrained = model["name"], model["pretrained"]
    if not name.startswith("hf-hub:") and name not in known_model_names():
        close = sorted(n for n in known_model_names() if n.lower().startswith(name.lower()[:6]))[:8]
        raise ValueError(f"{key}.name: unknown open_clip model '{name}'"
                         + (f" (similar: {', '.join(close)})" if close else ""))
    if pretrained is None or name.startswith("hf-hub:"):
        return
    if is_local_checkpoint(pretrained):
        if not Path(pretrained).is_file():
            raise FileNotFoundError(f"{key}.pretrained: local checkpoint '{pretrained}' does not exist")
        return
    from ticlip_core.lean_imports import import_open_clip  # only here: a tag is checked against open_clip's registry

    open_clip = import_open_clip()

    if not open_clip.get_pretrained_cfg(name, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ValueError(f"{key}.pretrained: '{pretrained}' is neither an open_clip pretrained tag of {name} "
                         f"(known: {', '.join(tags) or 'none'}) nor a local checkpoint path")


def check_clclip_method_options(options: dict) -> None:
    """Each ``clclip.method_options`` entry must name a registered method and only its options."""
    from ticlip_core.clclip.methods import available_methods, get_method

    for method, opts in options.items():
        if method not in available_methods():
            raise ValueError(f"clclip.method_options.{method}: unknown CL-CLIP method '{method}'; "
                             f"registered: {', '.join(available_methods())}")
        try:
            get_method(method, **(opts or {}))
        except TypeError as err:
            raise ValueError(f"clclip.method_options.{method}: {err}") from None


def check_memclip(config: dict) -> None:
    """The memclip study's starting model, method options, grids and benchmarks."""
    from ticlip_core.memclip.methods import available_methods, get_method

    mcfg = config["memclip"]
    check_model(mcfg["model"], "memclip.model")
    if mcfg["model"]["pretrained"] is None and mcfg["model"]["name"] != config["clclip"]["model"]["name"]:
        raise ValueError(f"memclip.model: with pretrained null the starting model is the CL-CLIP study's original "
                         f"CLIP, a {config['clclip']['model']['name']} (clclip.model.name), not "
                         f"{mcfg['model']['name']}; give memclip.model.pretrained or the same name")
    for key in ("method_options", "grids"):
        for method, entry in mcfg[key].items():
            if method not in available_methods():
                raise ValueError(f"memclip.{key}.{method}: unknown memclip method '{method}'; "
                                 f"registered: {', '.join(available_methods())}")
            try:
                instance = get_method(method, **mcfg["method_options"].get(method, {}) or {})
            except TypeError as err:
                raise ValueError(f"memclip.method_options.{method}: {err}") from None
            if key == "grids":
                bad = sorted(set(entry) - {"lr", "epochs"} - set(instance.defaults))
                if bad:
                    raise ValueError(f"memclip.grids.{method}: {bad} are neither lr, epochs nor options of "
                                     f"{method} ({', '.join(sorted(instance.defaults)) or 'none'})")
    enabled = {name: bench for name, bench in mcfg["benchmarks"].items() if bench["enabled"]}
    if not enabled:
        raise ValueError("memclip.benchmarks: the study is enabled but names no enabled benchmark "
                         "(set memclip.enabled: false to run without it)")
    for name, bench in enabled.items():
        check_memclip_benchmark(bench, f"memclip.benchmarks.{name}")


def check_memclip_benchmark(bench: dict, key: str) -> None:
    """A benchmark's scenario keys: class needs ``num_tasks`` (dividing the synthetic class count),
    domain needs a ``domain_order`` of distinct domains (the synthetic world's, on synthetic data)."""
    from ticlip_core.data import world

    source, synthetic = bench["source"], bench["synthetic"]
    if bench["scenario"] == "class":
        if bench["num_tasks"] is None:
            raise ValueError(f"{key}.num_tasks: a class-incremental benchmark needs its number of tasks")
        if source == "synthetic" and synthetic["num_classes"] % bench["num_tasks"]:
            raise ValueError(f"{key}: {synthetic['num_classes']} classes (synthetic.num_classes) cannot be cut into "
                             f"{bench['num_tasks']} equal tasks (num_tasks)")
        if bench["domain_order"] is not None:
            raise ValueError(f"{key}.domain_order: only a domain-incremental benchmark has one")
    else:
        order = bench["domain_order"]
        if not order or len(set(order)) != len(order) or len(order) < 2:
            raise ValueError(f"{key}.domain_order: a domain-incremental benchmark needs two or more distinct "
                             f"domains, got {order}")
        if source == "synthetic" and set(order) - set(world.DOMAINS):
            raise ValueError(f"{key}.domain_order: {sorted(set(order) - set(world.DOMAINS))} are not domains of "
                             f"the synthetic world {list(world.DOMAINS)}")
    if source == "synthetic":
        timeless = len(world.timeless_class_ids())
        if synthetic["num_classes"] > timeless:
            raise ValueError(f"{key}.synthetic.num_classes: {synthetic['num_classes']} classes, but the synthetic "
                             f"world has {timeless} timeless classes")
        check_split(synthetic, f"{key}.synthetic")
    elif not bench["real"]["path"]:
        raise ValueError(f"{key}.real.path: a real benchmark needs the dataset's root folder")

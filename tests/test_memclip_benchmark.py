"""memclip's data layer: the prepared-benchmark format, the synthetic benchmarks rendered from
the world, and the real benchmarks read from tiny datasets in their official formats."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from test_dataset_loaders import write_domainnet
from ticlip_core.data import world
from ticlip_core.data.bucketing import split_of_key
from ticlip_core.data.datasets import load_dataset
from ticlip_core.data.loader import PixelSpec
from ticlip_core.data.synthetic import STREAM_MEMCLIP, crop_to_box, render_sample, scene_rng
from ticlip_core.memclip.benchmark import (Benchmark, SplitImages, TaskSpec, load_benchmark, load_table,
                                           write_benchmark)
from ticlip_core.memclip.real_benchmark import build_real_benchmark
from ticlip_core.memclip.synthetic_benchmark import build_synthetic_benchmark

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------------------------
# Format
# --------------------------------------------------------------------------------------------

def class_benchmark(**changes) -> Benchmark:
    fields = dict(name="toy", scenario="class", classnames=["a", "b", "c", "d"],
                  tasks=[TaskSpec("t0", [2, 0], None), TaskSpec("t1", [3, 1], None)],
                  image_size=4, source={"kind": "synthetic"}, summary={"seed": 7})
    return Benchmark(**{**fields, **changes})


def toy_tables():
    """Rows given out of (task, label) order; each image is filled with its row's number."""
    tables = {
        "train": pd.DataFrame({"key": ["k3", "k1", "k2", "k0"], "label": [1, 0, 2, 2], "task": [1, 0, 0, 0],
                               "domain": ["photo", "", None, "sketch"]}),
        "val": pd.DataFrame({"key": ["v0"], "label": [3], "task": [1], "domain": [""]}),
        "test": pd.DataFrame({"key": ["s0", "s1"], "label": [1, 0], "task": [1, 0], "domain": ["", ""]}),
    }
    images = {s: np.stack([np.full((4, 4, 3), 10 * i + j, np.uint8) for j in range(len(t))])
              for i, (s, t) in enumerate(tables.items())}
    return tables, images


def test_benchmark_json_round_trip_and_seen_classes():
    bm = class_benchmark()
    assert Benchmark.from_json(bm.to_json()) == bm
    assert bm.num_tasks == 2
    assert bm.seen_classes(0) == [2, 0] and bm.seen_classes(1) == [2, 0, 3, 1]
    dom = Benchmark(name="d", scenario="domain", classnames=["a", "b", "c"],
                    tasks=[TaskSpec("photo", [0, 1, 2], "photo"), TaskSpec("sketch", [2, 1, 0], "sketch")],
                    image_size=8)
    assert dom.seen_classes(0) == [0, 1, 2]
    with pytest.raises(ValueError, match="task index 2"):
        dom.seen_classes(2)


@pytest.mark.parametrize("changes, message", [
    (dict(scenario="task"), "unknown scenario 'task'"),
    (dict(tasks=[]), "no tasks"),
    (dict(tasks=[TaskSpec("t0", [0, 1], None), TaskSpec("t1", [1, 2], None)]), r"class 1 \('b'\) is in tasks 't0' and 't1'"),
    (dict(tasks=[TaskSpec("t0", [0, 4], None)]), r"label\(s\) \[4\] outside \[0, 4\)"),
    (dict(scenario="domain", tasks=[TaskSpec("p", [0, 1, 2, 3], "photo"), TaskSpec("q", [0, 1, 2, 3], "photo")]),
     "task domains repeat"),
    (dict(scenario="domain", tasks=[TaskSpec("p", [0, 1, 2, 3], None)]), "names no domain"),
    (dict(scenario="domain", tasks=[TaskSpec("p", [0, 1, 2], "photo")]), r"misses \[3\]"),
])
def test_benchmark_refuses_bad_descriptions(changes, message):
    with pytest.raises(ValueError, match=message):
        class_benchmark(**changes)


def test_write_benchmark_orders_rows_and_round_trips(tmp_path):
    tables, images = toy_tables()
    summary = write_benchmark(tmp_path, class_benchmark(), tables, images)
    # train sorted by (task, label), input order kept within a class: k1 (0,0), k2 (0,2), k0 (0,2), k3 (1,1)
    train = load_table(tmp_path, "train")
    assert train["key"].tolist() == ["k1", "k2", "k0", "k3"]
    assert train["index"].tolist() == [0, 1, 2, 3]
    assert train["domain"].tolist() == ["", "", "sketch", "photo"]
    assert [str(train[c].dtype) for c in ("label", "task", "index")] == ["int64"] * 3
    assert load_table(tmp_path, "test")["key"].tolist() == ["s1", "s0"]
    assert summary["seed"] == 7
    assert summary["counts"]["train"] == {"total": 4, "per_task": [3, 1], "per_class": [1, 1, 2, 0]}
    assert summary["counts"]["val"] == {"total": 1, "per_task": [0, 1], "per_class": [0, 0, 0, 1]}
    loaded = load_benchmark(tmp_path)
    assert loaded.summary == summary and loaded.tasks == class_benchmark().tasks
    # pixels follow their rows: k1, k2, k0, k3 were input rows 1, 2, 3, 0, filled with their number
    data = SplitImages(tmp_path, "train")
    assert len(data) == 4 and data[0].shape == (4, 4, 3) and str(data[0].dtype) == "torch.uint8"
    assert [int(data[i][0, 0, 0]) for i in range(4)] == [1, 2, 3, 0]
    assert data.get([3, 0]).shape == (2, 4, 4, 3) and data.get([3, 0])[:, 1, 1, 1].tolist() == [0, 1]
    assert [int(v) for v in SplitImages(tmp_path, "test").get([0, 1])[:, 0, 0, 0]] == [21, 20]
    with pytest.raises(IndexError, match="row 4"):
        data[4]


def test_write_benchmark_refuses_inconsistent_tables(tmp_path):
    tables, images = toy_tables()
    dup = {**tables, "train": tables["train"].assign(key=["k3", "k1", "k1", "k0"])}
    with pytest.raises(ValueError, match="key 'k1' occurs more than once"):
        write_benchmark(tmp_path, class_benchmark(), dup, images)
    both = {**tables, "val": tables["val"].assign(key=["k0"])}
    with pytest.raises(ValueError, match="split val: key 'k0' is also in split train"):
        write_benchmark(tmp_path, class_benchmark(), both, images)
    wrong = {**tables, "test": tables["test"].assign(label=[2, 0])}  # label 2 is task 0's, row says task 1
    with pytest.raises(ValueError, match=r"sample 's0' has label 2 \('c'\), not a class of its task 't1'"):
        write_benchmark(tmp_path, class_benchmark(), wrong, images)
    with pytest.raises(ValueError, match="task 5, outside"):
        write_benchmark(tmp_path, class_benchmark(), {**tables, "val": tables["val"].assign(task=[5])}, images)
    short = {**images, "val": images["val"][:0]}
    with pytest.raises(ValueError, match=r"shape \(1, 4, 4, 3\)"):
        write_benchmark(tmp_path, class_benchmark(), tables, short)
    with pytest.raises(ValueError, match="images=None"):
        write_benchmark(tmp_path, class_benchmark(), tables, None)
    assert not (tmp_path / "benchmark.json").exists()


# --------------------------------------------------------------------------------------------
# Synthetic benchmarks
# --------------------------------------------------------------------------------------------

SYN = dict(seed=3, per_class=16, val_fraction=0.25, test_fraction=0.25, image_size=16, render_size=48)


def synthetic_class(out, **changes):
    return build_synthetic_benchmark(out, **{**dict(name="syn", scenario="class", num_classes=4, num_tasks=2),
                                             **SYN, **changes})


def check_splits(folder, bm):
    """Disjoint splits, every (task, class) in every split; returns the tables."""
    tables = {s: load_table(folder, s) for s in SPLITS}
    keys = [set(t["key"]) for t in tables.values()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    for split, table in tables.items():
        pairs = set(zip(table["task"], table["label"]))
        assert pairs == {(t, c) for t, task in enumerate(bm.tasks) for c in task.classes}, split
    return tables


def test_synthetic_class_benchmark(tmp_path):
    summary = synthetic_class(tmp_path)
    bm = load_benchmark(tmp_path)
    ids = [world.timeless_class_ids()[i] for i in np.random.RandomState(3).permutation(48)[:4]]
    assert bm.classnames == [world.class_names()[i] for i in ids]
    assert [t.classes for t in bm.tasks] == [[0, 1], [2, 3]] and bm.scenario == "class"
    tables = check_splits(tmp_path, bm)
    both = pd.concat(tables.values())
    assert both.groupby("label").size().tolist() == [16] * 4  # per_class crops over the three splits
    assert set(both["domain"]) <= set(world.DOMAINS) and len(set(both["domain"])) > 1
    for split, table in tables.items():
        assert (table["task"] == table["label"] // 2).all()
        assert all(split_of_key(k, 0.25, 0.25) == split for k in table["key"])
        assert table["index"].tolist() == list(range(len(table)))
    assert summary["counts"]["train"]["total"] == len(tables["train"])

    # object-centred crops, not background, and each is the crop of its key's scene
    train = tables["train"]
    images = SplitImages(tmp_path, "train").get(range(len(train))).numpy()
    assert images.shape == (len(train), 16, 16, 3)
    assert images.reshape(len(train), -1).std(axis=1).min() > 10
    row = train.iloc[-1]
    class_id, scene = ids[row["label"]], int(row["key"].rsplit("/", 1)[1])
    assert row["key"].startswith(f"syn/mixed/{bm.classnames[row['label']].replace(' ', '_')}/")
    image, meta = render_sample(scene_rng(3, STREAM_MEMCLIP, class_id, 0, scene), year=None,
                                image_size=48, class_id=class_id)
    expected = PixelSpec(16, (0, 0, 0), (1, 1, 1)).to_array(crop_to_box(image, meta["boxes"][0]))
    assert np.array_equal(images[-1], expected) and meta["domain"] == row["domain"]


def test_synthetic_domain_benchmark(tmp_path):
    build_synthetic_benchmark(tmp_path, name="dom", scenario="domain", num_classes=3,
                              domains=["sketch", "photo"], class_order_seed=11, **SYN)
    bm = load_benchmark(tmp_path)
    ids = [world.timeless_class_ids()[i] for i in np.random.RandomState(11).permutation(48)[:3]]
    assert bm.classnames == [world.class_names()[i] for i in ids]
    assert [(t.name, t.domain, t.classes) for t in bm.tasks] == [("sketch", "sketch", [0, 1, 2]),
                                                                 ("photo", "photo", [0, 1, 2])]
    assert bm.seen_classes(0) == [0, 1, 2]
    for table in check_splits(tmp_path, bm).values():
        assert (table["domain"] == table["task"].map({0: "sketch", 1: "photo"})).all()
        assert all(k.split("/")[1] == d for k, d in zip(table["key"], table["domain"]))


def test_synthetic_benchmark_is_deterministic_and_independent_of_workers(tmp_path):
    args = dict(num_classes=2, num_tasks=2, per_class=8, val_fraction=0.3, test_fraction=0.3)
    synthetic_class(tmp_path / "a", **args)
    synthetic_class(tmp_path / "b", workers=2, **args)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["benchmark.json", "test.npz", "test.parquet", "train.npz", "train.parquet",
                     "val.npz", "val.parquet"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    synthetic_class(tmp_path / "c", **{**args, "seed": 4})
    assert (tmp_path / "a" / "train.npz").read_bytes() != (tmp_path / "c" / "train.npz").read_bytes()


@pytest.mark.parametrize("changes, message", [
    (dict(per_class=3, val_fraction=0.05, test_fraction=0.05), "use a larger per_class than 3"),
    (dict(num_tasks=3), "num_classes 4 does not split into num_tasks 3"),
    (dict(domains=["photo"]), "domains must be None"),
    (dict(scenario="domain", num_tasks=None, domains=["photo", "oil"]), r"unknown domain\(s\) \['oil'\]"),
    (dict(scenario="domain", num_tasks=None, domains=["photo", "photo"]), "repeat a domain"),
    (dict(scenario="domain", num_tasks=3, domains=["photo", "sketch"]), "num_tasks 3 differs"),
    (dict(num_classes=49), "num_classes must be 1 to 48"),
    (dict(val_fraction=0.5, test_fraction=0.5), "sum under 1"),
])
def test_synthetic_benchmark_refuses_bad_arguments(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        synthetic_class(tmp_path, **changes)


# --------------------------------------------------------------------------------------------
# Real benchmarks
# --------------------------------------------------------------------------------------------

def write_cifar100(root, train_per_class=4, seed=0):
    """A ``cifar-100-python`` release with all 100 classes: ``train_per_class`` random images of
    each class in train, one in test, labels interleaved (0, 1, ..., 99, 0, 1, ...)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("test", 1)):
        labels = [c for _ in range(n) for c in range(100)]
        batch = {b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), b"fine_labels": labels,
                 b"coarse_labels": [c // 5 for c in labels],
                 b"filenames": [f"{split}_{i}.png".encode() for i in range(len(labels))]}
        with open(folder / split, "wb") as f:
            pickle.dump(batch, f)
    meta = {b"fine_label_names": [f"class_{c}".encode() for c in range(100)],
            b"coarse_label_names": [f"super_{c}".encode() for c in range(20)]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


def test_real_cifar100_class_benchmark(tmp_path):
    write_cifar100(tmp_path / "cifar")
    summary = build_real_benchmark(tmp_path / "bm", name="c100", scenario="class", format="cifar100",
                                   path=str(tmp_path / "cifar"), num_tasks=10, val_fraction=0.25, image_size=16)
    bm = load_benchmark(tmp_path / "bm")
    np.random.seed(1993)
    order = np.random.permutation(100).tolist()
    assert [t.classes for t in bm.tasks] == [order[10 * t:10 * t + 10] for t in range(10)]
    assert bm.tasks[0].classes[:4] == [68, 56, 78, 8]  # iCaRL / PyCIL's CIFAR-100 order
    assert bm.classnames[68] == "class 68" and bm.source["splits"] == {"train": "train", "val": "train",
                                                                       "test": "test"}
    tables = {s: load_table(tmp_path / "bm", s) for s in SPLITS}
    train_keys = {f"train/{i:05d}" for i in range(400)}
    for split in ("train", "val"):
        table = tables[split]
        assert set(table["source_key"]) <= train_keys
        assert all(split_of_key(k, 0.25, 0.0) == split for k in table["source_key"])
        assert (table["key"] == "c100/train/" + table["source_key"]).all()
    assert set(tables["train"]["source_key"]) | set(tables["val"]["source_key"]) == train_keys
    assert not set(tables["train"]["key"]) & set(tables["val"]["key"])
    assert len(tables["test"]) == 100 and set(tables["test"]["source_key"]) == {f"test/{i:05d}" for i in range(100)}
    for table in tables.values():
        source_label = table["source_key"].map(lambda k: int(k.split("/")[1]) % 100)  # labels interleaved
        assert (table["label"] == source_label).all()
        assert (table["task"] == table["label"].map(lambda c: order.index(c) // 10)).all()
        ordered = table.sort_values(["task", "label", "key"])
        assert table["key"].tolist() == ordered["key"].tolist()
    assert summary["counts"]["test"]["per_task"] == [10] * 10

    # pixels: the loader's own image, resized to the benchmark's size
    row = 3
    source = {s.key: s for s in load_dataset("cifar100", tmp_path / "cifar", "train")}
    expected = PixelSpec(16, (0, 0, 0), (1, 1, 1)).to_array(source[tables["val"]["source_key"].iloc[row]].load())
    images = SplitImages(tmp_path / "bm", "val")
    assert images[row].shape == (16, 16, 3) and np.array_equal(images[row].numpy(), expected)
    copy = pickle.loads(pickle.dumps(images))  # what a data-loader worker receives
    assert copy._cache is None and np.array_equal(copy.get([row, 0])[0].numpy(), expected)


def test_real_benchmark_caps_and_missing_source_keys(tmp_path):
    write_cifar100(tmp_path / "cifar")
    build_real_benchmark(tmp_path / "bm", name="c100", scenario="class", format="cifar100", path=tmp_path / "cifar",
                         num_tasks=5, val_fraction=0.0, image_size=8, max_per_class={"train": 2})
    train = load_table(tmp_path / "bm", "train")
    assert len(load_table(tmp_path / "bm", "val")) == 0 and len(train) == 200
    # class c's train rows are c, c+100, c+200, c+300: the cap keeps the first two by key
    assert set(train["source_key"]) == {f"train/{i:05d}" for i in range(200)}
    assert load_benchmark(tmp_path / "bm").summary["dropped_by_cap"] == {"train": 200}

    write_cifar100(tmp_path / "cifar", train_per_class=1)  # the source shrinks under the benchmark
    images = SplitImages(tmp_path / "bm", "train")
    gone = int(np.flatnonzero(train["source_key"] == "train/00150")[0])
    with pytest.raises(ValueError, match=r"source key 'train/00150' \(row \d+\) is not in the dataset cifar100_fine_train"):
        images[gone]


def test_real_domainnet_domain_benchmark(tmp_path):
    write_domainnet(tmp_path / "dn", domains=("clipart", "real", "sketch"))
    summary = build_real_benchmark(tmp_path / "bm", name="dn", scenario="domain", format="domainnet",
                                   path=tmp_path / "dn", domain_order=["real", "clipart"], image_size=8)
    bm = load_benchmark(tmp_path / "bm")
    assert [(t.name, t.domain, t.classes) for t in bm.tasks] == [("real", "real", [0, 1, 2]),
                                                                 ("clipart", "clipart", [0, 1, 2])]
    assert summary["skipped_domains"] == {"train": {"sketch": 3}, "test": {"sketch": 3}}
    test = load_table(tmp_path / "bm", "test")
    assert test["source_key"].tolist() == [f"{d}/{c}/{d}_{i:03d}_test.jpg" for d in ("real", "clipart")
                                           for i, c in enumerate(["aircraft_carrier", "apple", "zebra"])]
    assert test["domain"].tolist() == ["real"] * 3 + ["clipart"] * 3 and test["task"].tolist() == [0] * 3 + [1] * 3
    train = pd.concat([load_table(tmp_path / "bm", s) for s in ("train", "val")])
    assert len(train) == 6 and (train["domain"] == train["task"].map({0: "real", 1: "clipart"})).all()
    # the zebra of clipart is solid blue (the loaders' fixture), 13x10 pixels resized to 8x8
    pixel = SplitImages(tmp_path / "bm", "test")[5].numpy().reshape(-1, 3).mean(axis=0)
    assert pixel[2] > 200 and pixel[0] < 40 and pixel[1] < 40

    with pytest.raises(ValueError, match=r"no train samples \(no sample of domain\(s\) \['painting'\]\)"):
        build_real_benchmark(tmp_path / "bad", name="dn", scenario="domain", format="domainnet",
                             path=tmp_path / "dn", domain_order=["real", "painting"])
    with pytest.raises(ValueError, match="repeats a domain"):
        build_real_benchmark(tmp_path / "bad", name="dn", scenario="domain", format="domainnet",
                             path=tmp_path / "dn", domain_order=["real", "real"])


def test_real_domainnet_default_order_is_the_six_domain_protocol(tmp_path):
    write_domainnet(tmp_path / "dn", domains=("clipart", "infograph", "painting", "quickdraw", "real", "sketch"))
    build_real_benchmark(tmp_path / "bm", name="dn", scenario="domain", format="domainnet", path=tmp_path / "dn",
                         image_size=8)
    assert [t.domain for t in load_benchmark(tmp_path / "bm").tasks] == [
        "real", "quickdraw", "painting", "sketch", "infograph", "clipart"]
    with pytest.raises(ValueError, match="give domain_order"):
        build_real_benchmark(tmp_path / "x", name="c", scenario="domain", format="cifar100", path=tmp_path)


def test_real_benchmark_refuses_bad_arguments(tmp_path):
    write_cifar100(tmp_path / "cifar", train_per_class=1)
    common = dict(name="c", scenario="class", format="cifar100", path=tmp_path / "cifar")
    with pytest.raises(ValueError, match="100 classes do not split into num_tasks 3"):
        build_real_benchmark(tmp_path / "bm", num_tasks=3, **common)
    with pytest.raises(ValueError, match="both 'train'"):
        build_real_benchmark(tmp_path / "bm", num_tasks=10, test_split="train", **common)
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['dev'\]"):
        build_real_benchmark(tmp_path / "bm", num_tasks=10, max_per_class={"dev": 3}, **common)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        build_real_benchmark(tmp_path / "bm", num_tasks=10, options={"label_type": object()}, **common)
    assert not (tmp_path / "bm").exists()


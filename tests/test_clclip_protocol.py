"""CL-CLIP data protocol: class plans, the synthetic task, and the real path on tiny fake datasets."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from ticlip_core.clclip.base_pool import build_synthetic_base_pool
from ticlip_core.clclip.classes import COCO_SESSIONS, ClassPlan, coco_class_plan, synthetic_class_plan
from ticlip_core.clclip.real_task import build_real_task
from ticlip_core.clclip.synthetic_task import build_synthetic_task
from ticlip_core.clclip.task_files import CLASSIFICATION_SPLITS, load_classes, load_retrieval, load_split
from ticlip_core.data import world
from ticlip_core.data.bucketing import split_of_key

RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)


# --------------------------------------------------------------------------------------------
# Class plans
# --------------------------------------------------------------------------------------------

def test_coco_sessions_follow_table_1():
    assert len(COCO_SESSIONS) == 8 and all(len(s) == 10 for s in COCO_SESSIONS)
    names = [n for s in COCO_SESSIONS for n in s]
    assert len(set(names)) == 80
    assert COCO_SESSIONS[0][:3] == ("person", "bicycle", "car") and COCO_SESSIONS[0][-1] == "traffic light"
    assert COCO_SESSIONS[4][-1] == "orange" and COCO_SESSIONS[7][-1] == "toothbrush"
    plan = coco_class_plan(["goldfish", "tench"], ["shark"])
    assert plan.update_classes == names
    assert plan.num_sessions("mst") == 8 and plan.num_sessions("ost") == 1
    assert plan.session_classes("mst", 1) == list(range(10, 20))
    assert [plan.update_classes[i] for i in plan.session_classes("mst", 7)][-2:] == ["hair drier", "toothbrush"]
    assert plan.session_classes("ost", 0) == list(range(80))
    assert plan.seen_classes("mst", 2) == list(range(30))
    with pytest.raises(IndexError, match="session 8 out of range"):
        plan.session_classes("mst", 8)
    with pytest.raises(IndexError):
        plan.seen_classes("ost", 1)
    with pytest.raises(ValueError, match="unknown CL-CLIP setting"):
        plan.num_sessions("online")


def test_synthetic_class_plan_is_disjoint_covering_timeless_and_seeded():
    plan = synthetic_class_plan()
    assert len(plan.update_classes) == 16 and len(plan.zs_test_classes) == 12 and len(plan.zs_val_classes) == 12
    assert plan.sessions == [[2 * s, 2 * s + 1] for s in range(8)]
    groups = [set(plan.update_classes), set(plan.zs_test_classes), set(plan.zs_val_classes)]
    assert sum(len(g) for g in groups) == len(set.union(*groups)) == 40
    timeless = {world.class_names()[i] for i in world.timeless_class_ids()}
    assert set.union(*groups) <= timeless
    assert synthetic_class_plan(seed=0) == plan and synthetic_class_plan(seed=1) != plan
    small = synthetic_class_plan(num_update=6, num_sessions=3, num_zs_test=2, num_zs_val=2, seed=3)
    assert [len(s) for s in small.sessions] == [2, 2, 2]
    with pytest.raises(ValueError, match="only 48 timeless classes"):
        synthetic_class_plan(num_update=40, num_sessions=8, num_zs_test=5, num_zs_val=5)
    with pytest.raises(ValueError, match="equal sessions"):
        synthetic_class_plan(num_update=10, num_sessions=3)


def test_class_plan_rejects_overlaps_gaps_and_repeats():
    ok = dict(update_classes=["a", "b", "c"], sessions=[[0, 1], [2]], zs_test_classes=["d"], zs_val_classes=["e"])
    plan = ClassPlan(**ok)
    assert plan.seen_classes("mst", 1) == [0, 1, 2] and plan.session_classes("mst", 1) == [2]
    assert ClassPlan.from_json(plan.to_json()) == plan
    with pytest.raises(ValueError, match=r"update and zs_test classes must be disjoint; both hold \['b'\]"):
        ClassPlan(**{**ok, "zs_test_classes": ["B"]})
    with pytest.raises(ValueError, match="zs_test and zs_val"):
        ClassPlan(**{**ok, "zs_val_classes": ["d"]})
    with pytest.raises(ValueError, match=r"label\(s\) \[2\] are in no session"):
        ClassPlan(**{**ok, "sessions": [[0, 1]]})
    with pytest.raises(ValueError, match="more than one session"):
        ClassPlan(**{**ok, "sessions": [[0, 1], [1, 2]]})
    with pytest.raises(ValueError, match="outside"):
        ClassPlan(**{**ok, "sessions": [[0, 1], [2, 3]]})
    with pytest.raises(ValueError, match="twice"):
        ClassPlan(**{**ok, "update_classes": ["a", "b", "a"]})
    with pytest.raises(ValueError, match="empty"):
        ClassPlan(**{**ok, "zs_val_classes": []})


# --------------------------------------------------------------------------------------------
# Synthetic task
# --------------------------------------------------------------------------------------------

SMALL = dict(crops_per_class={"train": 5, "val": 2, "test": 3}, zs_per_class={"val": 2, "test": 3},
             retrieval_pairs=12, render_size=48, image_size=24)


@pytest.fixture(scope="module")
def small_plan():
    return synthetic_class_plan(num_update=4, num_sessions=2, num_zs_test=3, num_zs_val=2, seed=5)


@pytest.fixture(scope="module")
def synthetic_task(tmp_path_factory, small_plan):
    out = tmp_path_factory.mktemp("clclip_task")
    summary = build_synthetic_task(out, small_plan, seed=7, **SMALL)
    return out, summary


def test_synthetic_task_counts_labels_and_shapes(synthetic_task, small_plan):
    out, summary = synthetic_task
    expected = {"update_train": (4, 5), "update_val": (4, 2), "update_test": (4, 3), "zs_val": (2, 2),
                "zs_test": (3, 3)}
    for split, (n_classes, per_class) in expected.items():
        images, labels = load_split(out, split)
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert tuple(images.shape) == (n_classes * per_class, 24, 24, 3)
        assert labels.tolist() == [c for c in range(n_classes) for _ in range(per_class)]
        assert summary["counts"][split]["total"] == n_classes * per_class
        assert set(summary["counts"][split]["per_class"].values()) == {per_class}
        assert images.float().std() > 10  # not blank
    images, captions, owner = load_retrieval(out)
    assert tuple(images.shape) == (12, 24, 24, 3) and len(captions) == 12 and owner.tolist() == list(range(12))
    assert all(isinstance(c, str) and c.startswith("a ") for c in captions)
    assert load_classes(out) == small_plan
    assert json.loads((out / "classes.json").read_text())["sessions"] == [[0, 1], [2, 3]]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["seed"] == 7 and on_disk["counts"]["zs_test"]["per_class"] == \
        {name: 3 for name in small_plan.zs_test_classes}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.npz" for s in CLASSIFICATION_SPLITS] + ["retrieval.npz", "classes.json", "summary.json"])


def test_synthetic_task_is_byte_identical_for_a_seed(synthetic_task, small_plan, tmp_path):
    out, _ = synthetic_task
    build_synthetic_task(tmp_path / "again", small_plan, seed=7, **SMALL)
    for path in out.iterdir():
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), path.name
    build_synthetic_task(tmp_path / "other", small_plan, seed=8, **SMALL)
    assert (tmp_path / "other/update_train.npz").read_bytes() != (out / "update_train.npz").read_bytes()


def test_synthetic_task_bad_input(tmp_path, small_plan):
    plan = ClassPlan(["car"], [[0]], ["dog"], ["cat"])  # car changes look in 2019
    with pytest.raises(ValueError, match="change over time"):
        build_synthetic_task(tmp_path, plan, **SMALL)
    with pytest.raises(ValueError, match=r"not classes of the synthetic world"):
        build_synthetic_task(tmp_path, ClassPlan(["unicorn"], [[0]], ["dog"], ["cat"]), **SMALL)
    with pytest.raises(ValueError, match="unknown split"):
        build_synthetic_task(tmp_path, small_plan, crops_per_class={"dev": 3})
    with pytest.raises(ValueError, match="at least one"):
        build_synthetic_task(tmp_path, small_plan, zs_per_class={"val": 0})
    with pytest.raises(ValueError, match="unknown CL-CLIP split"):
        load_split(tmp_path, "update_dev")
    with pytest.raises(FileNotFoundError, match="build the task first"):
        load_split(tmp_path / "missing", "update_train")


# --------------------------------------------------------------------------------------------
# Real path on tiny fake datasets in the official formats (as tests/test_dataset_loaders.py)
# --------------------------------------------------------------------------------------------

COLOUR_OF = {"person": RED, "car": GREEN, "toothbrush": BLUE}
CATEGORIES = [{"id": 90, "name": "toothbrush", "supercategory": "indoor"},
              {"id": 1, "name": "person", "supercategory": "person"},
              {"id": 3, "name": "car", "supercategory": "vehicle"}]
CATEGORY_ID = {c["name"]: c["id"] for c in CATEGORIES}
# image id -> classes of its boxes; images 1-6 in train2017, 7-8 in val2017
COCO_IMAGES = {1: ["person", "car"], 2: ["car", "toothbrush"], 3: ["person"], 4: ["toothbrush", "car"],
               5: ["person", "person"], 6: ["car"], 7: ["person", "toothbrush"], 8: ["car"]}
KARPATHY = {2: "test", 7: "test", 3: "val", 1: "train", 4: "train", 5: "restval", 6: "train", 8: "restval"}


def write_fake_coco(root):
    """COCO 2017 instances (train/val) and Karpathy's json; each box painted its class colour.

    The images are PNG data under COCO's ``{id:012d}.jpg`` names (PIL reads by content), so
    crops keep exact colours and ``coco_captions`` finds them.
    """
    split_of = {i: ("train" if i <= 6 else "val") for i in COCO_IMAGES}
    annotations = {"train": [], "val": []}
    images = {"train": [], "val": []}
    for image_id, classes in COCO_IMAGES.items():
        split = split_of[image_id]
        picture = Image.new("RGB", (40, 20), GREY)
        for slot, name in enumerate(classes):
            picture.paste(COLOUR_OF[name], (slot * 20 + 2, 2, slot * 20 + 18, 18))
            annotations[split].append({"id": image_id * 10 + slot, "image_id": image_id,
                                       "category_id": CATEGORY_ID[name], "iscrowd": 0, "area": 256.0,
                                       "bbox": [slot * 20 + 2, 2, 16, 16]})
        name = f"{image_id:012d}.jpg"
        (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
        picture.save(root / f"{split}2017" / name, format="PNG")
        images[split].append({"id": image_id, "file_name": name, "width": 40, "height": 20})
    (root / "annotations").mkdir(exist_ok=True)
    for split in ("train", "val"):
        data = {"images": images[split], "annotations": annotations[split], "categories": CATEGORIES}
        (root / f"annotations/instances_{split}2017.json").write_text(json.dumps(data))
    entries = [{"cocoid": i, "imgid": i, "split": KARPATHY[i], "filepath": "val2014",
                "filename": f"COCO_val2014_{i:012d}.jpg",
                "sentences": [{"raw": f"image {i} caption {j}"} for j in range(1 + i % 2)]}
               for i in sorted(COCO_IMAGES)]
    (root / "annotations/dataset_coco.json").write_text(json.dumps({"images": entries}))


TIERED = {"train": {"n001": 3, "n002": 3}, "test": {"n003": 2}}
SYNSETS = {"n001": "goldfish", "n002": "great_white_shark", "n003": "tench"}


def write_fake_tiered(root):
    """tiered-ImageNet-style folders: two training classes, one test class, and a corrupt file."""
    for split, classes in TIERED.items():
        for k, (synset, n) in enumerate(classes.items()):
            (root / split / synset).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (30, 20), (40 * k, 10 * i, 200)).save(root / split / synset / f"{synset}_{i}.png")
    (root / "train/n001/broken.jpg").write_bytes(b"not a jpeg")


@pytest.fixture
def fake_roots(tmp_path):
    coco, tiered = tmp_path / "coco", tmp_path / "tiered"
    write_fake_coco(coco)
    write_fake_tiered(tiered)
    return coco, tiered


REAL_PLAN = ClassPlan(["toothbrush", "person", "car"], [[0, 1], [2]], ["great white shark", "Goldfish"], ["tench"])


def build_real(out, coco, tiered, plan=REAL_PLAN, **options):
    return build_real_task(out, plan, update_dataset=("coco_objects", coco),
                           zs_dataset=("imagefolder", tiered, {"classnames": SYNSETS}),
                           retrieval_dataset=("coco_captions", coco), image_size=16, **{"seed": 0, **options})


def crop_classes(images, labels, plan):
    """(label name, colour name) of each crop, the colour read from its centre pixel."""
    names = {v: k for k, v in COLOUR_OF.items()}
    return [(plan.update_classes[int(y)], names[tuple(int(c) for c in im[8, 8])]) for im, y in zip(images, labels)]


def crops_of(images):
    """The boxes of ``images`` as (class, class) pairs, as ``crop_classes`` reads them back."""
    return sorted((name, name) for i in images for name in COCO_IMAGES[i])


def test_real_task_paper_split(fake_roots, tmp_path):
    coco, tiered = fake_roots
    summary = build_real(tmp_path / "task", coco, tiered)
    out = tmp_path / "task"
    # retrieval = Karpathy test images 2 and 7 with all their captions
    images, captions, owner = load_retrieval(out)
    assert tuple(images.shape) == (2, 16, 16, 3)
    assert captions == ["image 2 caption 0", "image 7 caption 0", "image 7 caption 1"]
    assert owner.tolist() == [0, 1, 1]
    # update test = the crops of the retrieval images, labelled by the plan's order
    test_images, test_labels = load_split(out, "update_test")
    pairs = crop_classes(test_images.numpy(), test_labels, REAL_PLAN)
    assert sorted(pairs) == crops_of([2, 7])
    assert test_labels.tolist() == sorted(test_labels.tolist())
    # update val = the crops of Karpathy's val images (image 3), as the paper; train = the crops of
    # Karpathy's train images (1, 4, 6: COCO's standard training set), restval images (5, 8) left out
    val = load_split(out, "update_val")
    train = load_split(out, "update_train")
    assert sorted(crop_classes(val[0].numpy(), val[1], REAL_PLAN)) == crops_of([3])
    assert sorted(crop_classes(train[0].numpy(), train[1], REAL_PLAN)) == crops_of([1, 4, 6])
    assert summary["excluded_restval"] == 3 and summary["excluded_retrieval"] == 0
    assert summary["update_val"] == "retrieval" and summary["retrieval_val_split"] == "val"
    assert summary["counts"]["update_test"]["per_class"] == {"toothbrush": 2, "person": 1, "car": 1}
    # with train_restval the restval images train too
    with_restval = build_real(tmp_path / "restval", coco, tiered, train_restval=True)
    assert with_restval["counts"]["update_train"]["total"] == len(crops_of([1, 4, 6, 5, 8]))
    assert with_restval["excluded_restval"] == 0
    # zero-shot: tiered train classes -> zs_test (labels follow the plan's order), test -> zs_val
    zs_images, zs_labels = load_split(out, "zs_test")
    assert zs_labels.tolist() == [0, 0, 0, 1, 1, 1] and tuple(zs_images.shape) == (6, 16, 16, 3)
    assert zs_images[0, 5, 5, 0] == 40  # class n002 (great white shark) has red = 40
    assert load_split(out, "zs_val")[1].tolist() == [0, 0]
    assert summary["corrupt"]["zs_test"] == 1  # broken.jpg skipped and counted
    assert load_classes(out) == REAL_PLAN


def test_real_task_hashed_validation_and_test_split_options(fake_roots, tmp_path):
    coco, tiered = fake_roots
    # update_val="hash": a hashed share of the (non-retrieval) images, restval included
    summary = build_real(tmp_path / "hash", coco, tiered, update_val="hash", val_fraction=0.5)
    others = [i for i in COCO_IMAGES if i not in (2, 7)]
    hashed_val = [i for i in others if split_of_key(f"coco:{i}", 0.5, 0.0) == "val"]
    assert 0 < len(hashed_val) < len(others)  # the fixture exercises both sides of the split
    val = load_split(tmp_path / "hash", "update_val")
    assert sorted(crop_classes(val[0].numpy(), val[1], REAL_PLAN)) == crops_of(hashed_val)
    assert summary["counts"]["update_train"]["total"] == len(crops_of(set(others) - set(hashed_val)))
    assert summary["val_fraction"] == 0.5 and summary["excluded_restval"] == 0
    # update_test names a split: test = val2017 crops (images 7, 8); training crops of retrieval image 2 left out
    summary = build_real(tmp_path / "task", coco, tiered, update_test="val", seed=3)
    test = load_split(tmp_path / "task", "update_test")
    assert sorted(crop_classes(test[0].numpy(), test[1], REAL_PLAN)) == crops_of([7, 8])
    assert summary["excluded_retrieval"] == 2
    again = build_real(tmp_path / "again", coco, tiered, update_test="val", seed=3)
    assert again["counts"] == summary["counts"]
    for path in (tmp_path / "task").iterdir():
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes(), path.name
    with pytest.raises(ValueError, match="update_val must be one of"):
        build_real(tmp_path / "bad", coco, tiered, update_val="train")


def test_real_task_caps_only_the_zero_shot_test_classes_unless_told(fake_roots, tmp_path):
    """The paper caps the zero-shot test classes (100 images each) and nothing else."""
    coco, tiered = fake_roots
    summary = build_real(tmp_path / "paper", coco, tiered)
    assert summary["max_per_class"] == {"update_train": None, "update_val": None, "update_test": None,
                                        "zs_val": None, "zs_test": 100}
    summary = build_real(tmp_path / "zs", coco, tiered, max_per_class={"zs_test": 2})
    counts = summary["counts"]
    assert counts["zs_test"]["per_class"] == {"great white shark": 2, "Goldfish": 2}
    assert counts["update_train"]["per_class"]["car"] == 3    # three car crops in train: not capped
    assert counts["zs_val"]["per_class"] == {"tench": 2}
    summary = build_real(tmp_path / "all", coco, tiered, max_per_class={"update_train": 1, "zs_test": None})
    assert max(summary["counts"]["update_train"]["per_class"].values()) == 1
    assert summary["counts"]["zs_test"]["per_class"] == {"great white shark": 3, "Goldfish": 3}
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['train'\]"):
        build_real(tmp_path / "bad", coco, tiered, max_per_class={"train": 5})
    with pytest.raises(ValueError, match="at least 1"):
        build_real(tmp_path / "bad", coco, tiered, max_per_class={"zs_val": 0})


def test_real_task_names_unknown_classes(fake_roots, tmp_path):
    coco, tiered = fake_roots
    plan = ClassPlan(["toothbrush", "person", "car", "bicycle"], [[0, 1, 2, 3]], ["goldfish"], ["tench"])
    with pytest.raises(ValueError, match=r"not in the dataset: \['bicycle'\]"):
        build_real(tmp_path / "task", coco, tiered, plan=plan)
    plan = ClassPlan(["toothbrush", "person"], [[0, 1]], ["goldfish", "great white shark"], ["tench"])
    with pytest.raises(ValueError, match=r"dataset class\(es\) not in the plan: \['car'\]"):
        build_real(tmp_path / "task", coco, tiered, plan=plan)
    summary = build_real(tmp_path / "task", coco, tiered, plan=plan, allow_extra_classes=True)
    assert summary["dropped_extra_classes"]["update"] == 5  # the five car boxes
    plan = ClassPlan(["toothbrush", "person", "car"], [[0, 1, 2]], ["goldfish"], ["zebra fish"])
    with pytest.raises(ValueError, match=r"zs_val.*not in the dataset: \['zebra fish'\]"):
        build_real(tmp_path / "task2", coco, tiered, plan=plan, allow_extra_classes=True)
    with pytest.raises(ValueError, match="unknown dataset format"):
        build_real_task(tmp_path / "t", REAL_PLAN, update_dataset=("coco", coco), zs_dataset=("imagefolder", tiered),
                        retrieval_dataset=("coco_captions", coco))


# --------------------------------------------------------------------------------------------
# Base pool of the original CLIP
# --------------------------------------------------------------------------------------------

def test_base_pool_mixes_scenes_and_named_crops_in_shards(tmp_path):
    """The pool holds exactly the asked samples, the asked share of whole scenes spread evenly,
    crops captioned with their class name and colour, in img2dataset-layout shards."""
    import pandas as pd

    summary = build_synthetic_base_pool(tmp_path, num_samples=30, seed=3, scene_fraction=1 / 3,
                                        samples_per_shard=20)
    assert summary["samples"] == 30 and summary["shards"] == 2
    assert summary["whole_scenes"] == 10 and summary["crops"] == 20
    rows = pd.concat([pd.read_parquet(tmp_path / f"0000{i}.parquet") for i in range(2)])
    assert len(rows) == 30 and sorted(p.name for p in tmp_path.glob("*.tar")) == ["00000.tar", "00001.tar"]
    crops = rows[rows.caption.str.startswith(("a photo of a ", "a photo of an "))]
    for _, row in crops.iterrows():
        assert row.caption.endswith(f"{row.colour} {row.label_names[0]}.")
    timeless = {world.class_names()[i] for i in world.timeless_class_ids()}
    assert {n for names in rows.label_names for n in names} <= timeless
    # rendered again in two processes: the same bytes
    again = build_synthetic_base_pool(tmp_path / "again", num_samples=30, seed=3, scene_fraction=1 / 3,
                                      samples_per_shard=20, workers=2)
    for name in ("00000.tar", "00001.tar", "00000.parquet", "00001.parquet"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert again["per_class"] == summary["per_class"] and again["scenes_drawn"] == summary["scenes_drawn"]


def test_base_pool_bad_input(tmp_path):
    with pytest.raises(ValueError, match="num_samples"):
        build_synthetic_base_pool(tmp_path, num_samples=0)
    with pytest.raises(ValueError, match="scene_fraction"):
        build_synthetic_base_pool(tmp_path, num_samples=5, scene_fraction=1.5)
    with pytest.raises(ValueError, match="workers"):
        build_synthetic_base_pool(tmp_path, num_samples=5, workers=0)

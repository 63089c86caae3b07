"""Dataset loaders: tiny fixtures in each dataset's official on-disk format, read back."""
from __future__ import annotations

import io
import json
import pickle
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ticlip_core.data.datasets import (LOADERS, ClassificationSample, ClassificationSet, RetrievalSample,
                                       RetrievalSet, coco_captions, coco_objects, flickr30k_captions, load_cifar100,
                                       load_dataset, load_domainnet, load_imagefolder, write_shards)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def solid(path, colour, size=(16, 16), fmt=None):
    """Write a solid-colour image (format from the suffix unless ``fmt``) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def close_to(image, colour, tol=8):
    """Whether every pixel of ``image`` is within ``tol`` of ``colour`` (JPEG is lossy)."""
    pixels = np.asarray(image.convert("RGB"), dtype=int)
    return bool(np.abs(pixels - np.array(colour)).max() <= tol)


# --------------------------------------------------------------------------------------------
# CIFAR-100
# --------------------------------------------------------------------------------------------

def write_cifar(root, rows):
    """A ``cifar-100-python`` folder whose train and test hold ``rows`` (plane values, fine, coarse)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    data = np.zeros((len(rows), 3072), dtype=np.uint8)
    for i, (planes, _, _) in enumerate(rows):
        for c, value in enumerate(planes):
            data[i, c * 1024:(c + 1) * 1024] = value
    batch = {b"batch_label": b"training batch 1 of 1", b"data": data,
             b"fine_labels": [r[1] for r in rows], b"coarse_labels": [r[2] for r in rows],
             b"filenames": [f"img_{i}.png".encode() for i in range(len(rows))]}
    for split in ("train", "test"):
        with open(folder / split, "wb") as f:
            pickle.dump(batch, f)
    meta = {b"fine_label_names": [b"apple", b"aquarium_fish", b"maple_tree"],
            b"coarse_label_names": [b"fruit_and_vegetables", b"fish"]}
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return folder, data


def test_cifar100_labels_classnames_and_plane_order(tmp_path):
    rows = [((255, 0, 0), 0, 0), ((0, 255, 0), 1, 1), ((0, 0, 255), 2, 0), ((255, 255, 255), 1, 1)]
    folder, data = write_cifar(tmp_path, rows)
    ds = load_cifar100(tmp_path, "train")  # the parent of cifar-100-python
    assert len(ds) == 4 and ds.name == "cifar100_fine_train"
    assert ds.classnames == ["apple", "aquarium fish", "maple tree"]
    assert [s.label for s in ds] == [0, 1, 2, 1]
    assert ds.class_counts() == [1, 2, 1]
    assert ds[3].meta == {"fine_label": 1, "coarse_label": 1, "filename": "img_3.png"}
    images = [s.load() for s in ds]
    assert all(im.size == (32, 32) and im.mode == "RGB" for im in images)
    assert [im.getpixel((5, 7)) for im in images] == [RED, GREEN, BLUE, WHITE]

    coarse = load_cifar100(folder, "test", label_type="coarse")  # the folder itself
    assert coarse.classnames == ["fruit and vegetables", "fish"]
    assert [s.label for s in coarse] == [0, 1, 0, 1]
    assert [s.key for s in coarse] == [f"test/{i:05d}" for i in range(4)]


def test_cifar100_pixels_are_row_major_within_each_plane(tmp_path):
    folder, data = write_cifar(tmp_path, [((0, 0, 0), 0, 0)])
    data[0, 1] = 200                 # R plane, row 0, column 1
    data[0, 1024 + 32] = 100         # G plane, row 1, column 0
    with open(folder / "train", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch[b"data"] = data
    with open(folder / "train", "wb") as f:
        pickle.dump(batch, f)
    image = load_cifar100(folder, "train")[0].load()
    assert image.getpixel((1, 0)) == (200, 0, 0)
    assert image.getpixel((0, 1)) == (0, 100, 0)


def test_cifar100_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_cifar100(tmp_path, "train")
    folder, _ = write_cifar(tmp_path, [((1, 2, 3), 5, 0)])  # fine label 5 of 3 classes
    with pytest.raises(ValueError, match=r"row 0 has fine label 5"):
        load_cifar100(folder, "train")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_cifar100(folder, "val")
    with pytest.raises(ValueError, match="label_type"):
        load_cifar100(folder, "train", label_type="medium")
    (folder / "test").unlink()
    with pytest.raises(FileNotFoundError, match="test"):
        load_cifar100(folder, "test", label_type="coarse")


# --------------------------------------------------------------------------------------------
# DomainNet
# --------------------------------------------------------------------------------------------

DN_CLASSES = ["aircraft_carrier", "apple", "zebra"]


def write_domainnet(root, domains=("clipart", "real")):
    """Two domains, three classes, one train and one test image per (domain, class)."""
    colours = [RED, GREEN, BLUE]
    for d_index, domain in enumerate(domains):
        for split in ("train", "test"):
            lines = []
            for label, cls in enumerate(DN_CLASSES):
                rel = f"{domain}/{cls}/{domain}_{label:03d}_{split}.jpg"
                solid(root / rel, colours[label], size=(12 + d_index, 10))
                lines.append(f"{rel} {label}")
            (root / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")


def test_domainnet_default_domains_classnames_and_meta(tmp_path):
    write_domainnet(tmp_path)
    ds = load_domainnet(tmp_path, "train")
    assert ds.meta["domains"] == ["clipart", "real"]  # only the domains with split files
    assert ds.classnames == ["aircraft carrier", "apple", "zebra"]
    assert len(ds) == 6 and ds.class_counts() == [2, 2, 2]
    assert ds[0].key == "clipart/aircraft_carrier/clipart_000_train.jpg"
    assert [s.meta["domain"] for s in ds] == ["clipart"] * 3 + ["real"] * 3
    assert [s.label for s in ds] == [0, 1, 2, 0, 1, 2]
    image = ds[5].load()
    assert image.size == (13, 10) and close_to(image, BLUE)

    real = load_domainnet(tmp_path, "test", domains=["real"])
    assert len(real) == 3 and {s.meta["domain"] for s in real} == {"real"}
    assert real.classnames == ds.classnames
    assert all(s.key.endswith("_test.jpg") for s in real)


def test_domainnet_bad_input(tmp_path):
    write_domainnet(tmp_path)
    with pytest.raises(FileNotFoundError, match="sketch_train.txt"):
        load_domainnet(tmp_path, "train", domains=["real", "sketch"])
    with pytest.raises(ValueError, match="unknown domain"):
        load_domainnet(tmp_path, "train", domains=["photo"])
    with pytest.raises(ValueError, match="unknown split"):
        load_domainnet(tmp_path, "val")
    (tmp_path / "real/zebra/real_002_test.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="real_002_test.jpg"):
        load_domainnet(tmp_path, "test")
    # label 1 names a different folder in another domain's file
    path = tmp_path / "real_train.txt"
    path.write_text(path.read_text().replace("real/apple/real_001_train.jpg 1",
                                             "real/apple/real_001_train.jpg 2"))
    with pytest.raises(ValueError, match="label 2 is class folder 'apple' here but 'zebra'"):
        load_domainnet(tmp_path, "train")


# --------------------------------------------------------------------------------------------
# Image folders (ImageNet layout)
# --------------------------------------------------------------------------------------------

def write_imagenet(root):
    """train/ with three synset folders (mixed-case extensions) and a stray non-image file."""
    solid(root / "train/n01440764/n01440764_10026.JPEG", RED, fmt="JPEG")
    solid(root / "train/n01440764/n01440764_2.jpeg", RED, fmt="JPEG")
    solid(root / "train/n01443537/n01443537_1.png", GREEN, size=(20, 8))
    solid(root / "train/n01484850/n01484850_7.Png", BLUE, fmt="PNG")
    solid(root / "train/n01484850/nested/n01484850_8.jpg", BLUE)
    (root / "train/n01484850/readme.txt").write_text("not an image")
    (root / "val").mkdir()
    (root / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n"
        "n01484850 great white shark, white shark, man-eater\n")


def test_imagefolder_sorted_classes_extensions_and_pixels(tmp_path):
    write_imagenet(tmp_path)
    ds = load_imagefolder(tmp_path, "train")
    assert ds.classnames == ["n01440764", "n01443537", "n01484850"]
    assert [s.key for s in ds] == ["n01440764/n01440764_10026.JPEG", "n01440764/n01440764_2.jpeg",
                                   "n01443537/n01443537_1.png", "n01484850/n01484850_7.Png",
                                   "n01484850/nested/n01484850_8.jpg"]
    assert [s.label for s in ds] == [0, 0, 1, 2, 2]
    image = ds[2].load()
    assert image.size == (20, 8) and image.getpixel((3, 3)) == GREEN
    assert close_to(ds[0].load(), RED)

    named = load_imagefolder(tmp_path, "train", classnames=tmp_path / "LOC_synset_mapping.txt")
    assert named.classnames == ["tench", "goldfish", "great white shark"]


def test_imagefolder_class_subset_in_given_order(tmp_path):
    write_imagenet(tmp_path)
    ds = load_imagefolder(tmp_path, "train", classes=["n01484850", "n01440764"],
                          classnames={"n01484850": "shark", "n01440764": "tench"})
    assert ds.classnames == ["shark", "tench"]
    assert [(s.label, s.meta["class_dir"]) for s in ds] == [(0, "n01484850")] * 2 + [(1, "n01440764")] * 2
    assert ds.class_counts() == [2, 2]


def test_imagefolder_bad_input(tmp_path):
    write_imagenet(tmp_path)
    with pytest.raises(FileNotFoundError, match="n09999999"):
        load_imagefolder(tmp_path, "train", classes=["n01440764", "n09999999"])
    with pytest.raises(ValueError, match=r"unknown split 'test'.*\['train', 'val'\]"):
        load_imagefolder(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="no class folders"):
        load_imagefolder(tmp_path, "val")
    with pytest.raises(ValueError, match="no name for class dir.*n01443537"):
        load_imagefolder(tmp_path, "train", classnames={"n01440764": "tench", "n01484850": "shark"})
    with pytest.raises(FileNotFoundError, match="missing_mapping.txt"):
        load_imagefolder(tmp_path, "train", classnames=tmp_path / "missing_mapping.txt")


# --------------------------------------------------------------------------------------------
# COCO 2017 object crops
# --------------------------------------------------------------------------------------------

def write_coco_instances(root, split="val"):
    """Two images; boxes painted in colour on grey; non-contiguous category ids 1, 3, 90."""
    grey = (128, 128, 128)
    image_a = Image.new("RGB", (44, 30), grey)
    image_a.paste(RED, (4, 5, 24, 25))        # bbox [4, 5, 20, 20]
    image_a.paste(BLUE, (26, 2, 44, 30))      # bbox [26.4, 2.2, 30, 27.6]: clipped at the right edge
    image_b = Image.new("RGB", (32, 32), grey)
    image_b.paste(GREEN, (0, 0, 18, 18))
    (root / f"{split}2017").mkdir(parents=True)
    image_a.save(root / f"{split}2017/000000000001.png", format="PNG")  # lossless: exact colours
    image_b.save(root / f"{split}2017/000000000002.png", format="PNG")
    instances = {
        "info": {}, "licenses": [],
        "images": [{"id": 1, "file_name": "000000000001.png", "width": 44, "height": 30},
                   {"id": 2, "file_name": "000000000002.png", "width": 32, "height": 32}],
        "categories": [{"id": 90, "name": "toothbrush", "supercategory": "indoor"},
                       {"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 3, "name": "car", "supercategory": "vehicle"}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [4.0, 5.0, 20.0, 20.0], "area": 400.0, "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 90, "bbox": [26.4, 2.2, 30.0, 27.6], "area": 400.0, "iscrowd": 0},
            {"id": 13, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 44.0, 30.0], "area": 900.0, "iscrowd": 1},
            {"id": 14, "image_id": 2, "category_id": 1, "bbox": [1.0, 1.0, 8.0, 30.0], "area": 240.0, "iscrowd": 0},
            {"id": 15, "image_id": 2, "category_id": 1, "bbox": [0.0, 0.0, 18.0, 18.0], "area": 324.0, "iscrowd": 0},
        ],
    }
    (root / "annotations").mkdir(exist_ok=True)
    (root / f"annotations/instances_{split}2017.json").write_text(json.dumps(instances))


def test_coco_objects_crops_labels_and_skips(tmp_path):
    write_coco_instances(tmp_path)
    ds = coco_objects(tmp_path, "val")
    assert ds.classnames == ["person", "car", "toothbrush"]  # ascending category id
    assert ds.meta["category_ids"] == [1, 3, 90]
    assert ds.skipped == {"crowd": 1, "small": 1}           # annotation 13 is crowd, 14 is 8 px wide
    assert [s.meta["annotation_id"] for s in ds] == [11, 12, 15]
    assert [s.label for s in ds] == [1, 2, 0]
    assert ds[0].key == "000000000001/11"
    crops = [s.load() for s in ds]
    assert crops[0].size == (20, 20) and close_to(crops[0], RED, tol=0)
    assert ds[1].meta["box"] == [26, 2, 44, 30]             # rounded, clipped to the 44x30 image
    assert crops[1].size == (18, 28) and close_to(crops[1], BLUE, tol=0)
    assert crops[2].size == (18, 18) and close_to(crops[2], GREEN, tol=0)

    assert len(coco_objects(tmp_path, "val", min_box_size=8)) == 4
    assert coco_objects(tmp_path, "val", min_box_size=19).skipped == {"crowd": 1, "small": 3}


def test_coco_objects_bad_input(tmp_path):
    write_coco_instances(tmp_path)
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        coco_objects(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split 'test'"):
        coco_objects(tmp_path, "test")
    (tmp_path / "val2017/000000000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="000000000002.png"):
        coco_objects(tmp_path, "val")


# --------------------------------------------------------------------------------------------
# COCO captions, Karpathy split
# --------------------------------------------------------------------------------------------

def karpathy_entry(imgid, cocoid, split, filepath="val2014", n_captions=5):
    filename = f"COCO_{filepath}_{cocoid:012d}.jpg"
    sentences = [{"raw": f"  caption {j} of image {cocoid}. ", "tokens": ["caption"], "imgid": imgid,
                  "sentid": imgid * 10 + j} for j in range(n_captions)]
    return {"filepath": filepath, "filename": filename, "imgid": imgid, "split": split,
            "sentences": sentences, "sentids": [s["sentid"] for s in sentences], "cocoid": cocoid}


def write_karpathy(root):
    """Five images: 2017 names in val2017/train2017, one only in the 2014 layout."""
    images = [karpathy_entry(0, 391895, "test"), karpathy_entry(1, 522418, "test", n_captions=6),
              karpathy_entry(2, 184613, "train", filepath="train2014"),
              karpathy_entry(3, 318219, "restval"), karpathy_entry(4, 554625, "val")]
    solid(root / "val2017/000000391895.jpg", RED)
    solid(root / "train2014/COCO_train2014_000000184613.jpg", BLUE)  # only the 2014 file
    solid(root / "train2017/000000522418.jpg", GREEN)
    solid(root / "val2017/000000318219.jpg", WHITE)
    solid(root / "val2017/000000554625.jpg", WHITE)
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations/dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))


def test_coco_captions_splits_paths_and_captions(tmp_path):
    write_karpathy(tmp_path)
    test = coco_captions(tmp_path)
    assert [s.key for s in test] == ["000000391895", "000000522418"]
    assert [len(s.captions) for s in test] == [5, 6]
    assert test[0].captions[0] == "caption 0 of image 391895."
    assert [s.meta["path"] for s in test] == ["val2017/000000391895.jpg", "train2017/000000522418.jpg"]
    assert close_to(test[0].load(), RED) and close_to(test[1].load(), GREEN)

    train = coco_captions(tmp_path, "train")  # Karpathy's train includes restval
    assert [(s.meta["cocoid"], s.meta["karpathy_split"]) for s in train] == [(184613, "train"), (318219, "restval")]
    assert train[0].meta["path"] == "train2014/COCO_train2014_000000184613.jpg"
    assert close_to(train[0].load(), BLUE)

    moved = tmp_path / "elsewhere.json"
    (tmp_path / "annotations/dataset_coco.json").rename(moved)
    assert len(coco_captions(tmp_path, "val", karpathy_json=moved)) == 1


def test_coco_captions_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset_coco.json"):
        coco_captions(tmp_path)
    write_karpathy(tmp_path)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        coco_captions(tmp_path, "dev")
    (tmp_path / "val2017/000000391895.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"cocoid=391895.*val2017/000000391895.jpg.*"
                                                r"COCO_val2014_000000391895.jpg"):
        coco_captions(tmp_path, "test")


# --------------------------------------------------------------------------------------------
# Flickr30k, Karpathy split
# --------------------------------------------------------------------------------------------

def write_flickr(root):
    """Karpathy's dataset_flickr30k.json over four photos: two test (one outside flickr30k-images/), one
    val, one train; the second test photo has a blank caption among its five."""
    photos = [("1000092795.jpg", "test", RED), ("10002456.jpg", "test", GREEN), ("1000268201.jpg", "val", BLUE),
              ("1000344755.jpg", "train", WHITE)]
    images = []
    for imgid, (filename, split, colour) in enumerate(photos):
        folder = root if imgid == 1 else root / "flickr30k-images"
        solid(folder / filename, colour, fmt="JPEG")
        raws = [f" photo {filename[:-4]} caption {j}. " for j in range(5)]
        if imgid == 1:
            raws[2] = "  "
        images.append({"filename": filename, "imgid": imgid, "split": split, "sentids": list(range(5)),
                       "sentences": [{"raw": r, "tokens": ["photo"], "imgid": imgid, "sentid": j}
                                     for j, r in enumerate(raws)]})
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images, "dataset": "flickr30k"}))


def test_flickr30k_captions_every_caption_and_paths(tmp_path):
    write_flickr(tmp_path)
    test = flickr30k_captions(tmp_path)
    assert test.name == "flickr30k_karpathy_test" and [s.key for s in test] == ["1000092795", "10002456"]
    assert test[0].captions == [f"photo 1000092795 caption {j}." for j in range(5)]
    assert len(test[1].captions) == 4                      # the blank caption dropped
    assert [s.meta["path"] for s in test] == ["flickr30k-images/1000092795.jpg", "10002456.jpg"]
    assert close_to(test[0].load(), RED) and close_to(test[1].load(), GREEN)
    assert [s.key for s in load_dataset("flickr30k_captions", tmp_path, "val")] == ["1000268201"]


def test_flickr30k_captions_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset_flickr30k.json"):
        flickr30k_captions(tmp_path)
    write_flickr(tmp_path)
    with pytest.raises(ValueError, match="unknown split 'restval'"):
        flickr30k_captions(tmp_path, "restval")
    (tmp_path / "flickr30k-images/1000092795.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="flickr30k-images/1000092795.jpg"):
        flickr30k_captions(tmp_path, "test")


# --------------------------------------------------------------------------------------------
# Registry and the common types
# --------------------------------------------------------------------------------------------

def test_registry_dispatches_and_rejects_unknown_formats(tmp_path):
    assert set(LOADERS) == {"imagefolder", "cifar100", "domainnet", "coco_objects", "coco_captions",
                            "flickr30k_captions"}
    write_domainnet(tmp_path)
    ds = load_dataset("domainnet", tmp_path, "test", domains=["clipart"])
    assert isinstance(ds, ClassificationSet) and len(ds) == 3
    with pytest.raises(ValueError, match="unknown dataset format 'imagenet'.*cifar100.*coco_captions"):
        load_dataset("imagenet", tmp_path, "train")


def test_sets_reject_out_of_range_labels_and_duplicate_keys():
    load = lambda: Image.new("RGB", (1, 1))  # noqa: E731
    with pytest.raises(ValueError, match="label 2, outside"):
        ClassificationSet("x", ["a", "b"], [ClassificationSample("k", 2, load)])
    with pytest.raises(ValueError, match="'k' occurs more than once"):
        ClassificationSet("x", ["a"], [ClassificationSample("k", 0, load)] * 2)
    with pytest.raises(ValueError, match="no captions"):
        RetrievalSet("x", [RetrievalSample("k", load, [])])


def test_missing_image_at_load_time_names_the_path(tmp_path):
    write_imagenet(tmp_path)
    ds = load_imagefolder(tmp_path, "train")
    (tmp_path / "train/n01440764/n01440764_2.jpeg").unlink()
    with pytest.raises(FileNotFoundError, match="n01440764_2.jpeg"):
        ds[1].load()


# --------------------------------------------------------------------------------------------
# Export to shards
# --------------------------------------------------------------------------------------------

def read_tars(out_dir):
    """(key, jpg bytes, caption, json metadata) of every sample of every tar, in order."""
    samples = []
    for tar_path in sorted(out_dir.glob("*.tar")):
        members = {}
        with tarfile.open(tar_path) as tar:
            for member in tar:
                key, ext = member.name.split(".", 1)
                members.setdefault(key, {})[ext] = tar.extractfile(member).read()
        samples += [(k, m["jpg"], m["txt"].decode(), json.loads(m["json"])) for k, m in members.items()]
    return samples


def test_write_shards_classification_round_trip(tmp_path):
    write_domainnet(tmp_path / "dn")
    ds = load_domainnet(tmp_path / "dn", "train")
    out = tmp_path / "shards"
    summary = write_shards(ds, out, samples_per_shard=4)
    assert (summary["samples"], summary["shards"]) == (6, 2)
    assert json.loads((out / "classnames.json").read_text()) == ds.classnames

    samples = read_tars(out)
    assert [k for k, *_ in samples] == ["00000" + f"{i}" for i in range(4)] + ["00001" + f"{i}" for i in range(2)]
    assert [txt for _, _, txt, _ in samples] == [ds.classnames[s.label] for s in ds]
    assert [meta["labels"] for *_, meta in samples] == [[s.label] for s in ds]
    assert [meta["source_key"] for *_, meta in samples] == [s.key for s in ds]
    image = Image.open(io.BytesIO(samples[2][1]))
    assert image.format == "JPEG" and image.mode == "RGB" and close_to(image, BLUE)

    table = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("*.parquet"))], ignore_index=True)
    assert [list(v) for v in table["labels"]] == [[s.label] for s in ds]
    assert [list(v) for v in table["label_names"]] == [[ds.classnames[s.label]] for s in ds]
    assert table["timestamp"].isna().all() and list(table["caption"]) == [t for _, _, t, _ in samples]

    with pytest.raises(FileExistsError, match="would not overwrite"):  # shard 1 would be stale
        write_shards(ds, out, samples_per_shard=10)


def test_write_shards_retrieval_round_trip(tmp_path):
    write_karpathy(tmp_path)
    ds = coco_captions(tmp_path, "test")
    out = tmp_path / "shards"
    assert write_shards(ds, out)["shards"] == 1
    assert not (out / "classnames.json").exists()
    samples = read_tars(out)
    assert len(samples) == 2
    assert [txt for _, _, txt, _ in samples] == [s.captions[0] for s in ds]
    assert [meta["captions"] for *_, meta in samples] == [s.captions for s in ds]
    assert [meta["source_key"] for *_, meta in samples] == ["000000391895", "000000522418"]
    assert close_to(Image.open(io.BytesIO(samples[1][1])), GREEN)
    table = pd.read_parquet(out / "00000.parquet")
    assert [len(c) for c in table["captions"]] == [5, 6] and "labels" not in table


def test_static_flickr30k_shards_list_every_caption(tmp_path):
    """A static retrieval set's sample json holds all captions of its image (``captions``); its
    ``caption`` and .txt stay the first one."""
    write_flickr(tmp_path)
    ds = load_dataset("flickr30k_captions", tmp_path, "test")
    write_shards(ds, tmp_path / "shards")
    samples = read_tars(tmp_path / "shards")
    assert [meta["captions"] for *_, meta in samples] == [s.captions for s in ds]
    assert [len(meta["captions"]) for *_, meta in samples] == [5, 4]
    assert [txt for _, _, txt, _ in samples] == [meta["caption"] for *_, meta in samples] == \
        [s.captions[0] for s in ds]

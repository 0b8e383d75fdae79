"""Label vocabulary of the engines: the reference's category names (人类/Human, 动物/Animal, 食物/Food,
电子类/Electronics, 家居类/Home category, 玩具/Toys, ...), COCO's 80 classes in English and Chinese (the
detector), and the 1000 ImageNet classes (the classifier; weights/imagenet_labels.csv, made by
training/make_imagenet_labels.py)."""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

CATEGORIES: dict[str, tuple[str, str]] = {  # key -> (zh, en)
    "human": ("人类", "Human"),
    "animal": ("动物", "Animal"),
    "vehicle": ("交通工具", "Vehicle"),
    "food": ("食物", "Food"),
    "electronics": ("电子类", "Electronics"),
    "home": ("家居类", "Home category"),
    "apparel": ("服饰穿戴类", "Apparel"),
    "sports": ("运动类", "Sports"),
    "outdoor": ("户外设施", "Outdoor facilities"),
    "kitchen": ("厨具类", "Kitchenware"),
    "culture": ("文化艺术类", "Culture and art"),
    "plant": ("植物", "Plant"),
    "building": ("建筑", "Building"),
    "tool": ("工具", "Tools"),
    "toy": ("玩具", "Toys"),
    "weapon": ("武器", "Weapons"),
    "scene": ("场景", "Scene"),
    "concept": ("概念", "Concept"),
    "color": ("颜色", "Color"),
}

# COCO class order (index = detector class id): (en, zh, category)
COCO: list[tuple[str, str, str]] = [
    ("person", "人", "human"), ("bicycle", "自行车", "vehicle"), ("car", "汽车", "vehicle"),
    ("motorcycle", "摩托车", "vehicle"), ("airplane", "飞机", "vehicle"), ("bus", "公共汽车", "vehicle"),
    ("train", "火车", "vehicle"), ("truck", "卡车", "vehicle"), ("boat", "船", "vehicle"),
    ("traffic light", "交通信号灯", "outdoor"), ("fire hydrant", "消防栓", "outdoor"),
    ("stop sign", "停车标志", "outdoor"), ("parking meter", "停车计时器", "outdoor"), ("bench", "长椅", "outdoor"),
    ("bird", "鸟", "animal"), ("cat", "猫", "animal"), ("dog", "狗", "animal"), ("horse", "马", "animal"),
    ("sheep", "羊", "animal"), ("cow", "牛", "animal"), ("elephant", "大象", "animal"), ("bear", "熊", "animal"),
    ("zebra", "斑马", "animal"), ("giraffe", "长颈鹿", "animal"), ("backpack", "背包", "apparel"),
    ("umbrella", "雨伞", "apparel"), ("handbag", "手提包", "apparel"), ("tie", "领带", "apparel"),
    ("suitcase", "行李箱", "apparel"), ("frisbee", "飞盘", "sports"), ("skis", "滑雪板", "sports"),
    ("snowboard", "单板滑雪板", "sports"), ("sports ball", "球", "sports"), ("kite", "风筝", "sports"),
    ("baseball bat", "棒球棒", "sports"), ("baseball glove", "棒球手套", "sports"),
    ("skateboard", "滑板", "sports"), ("surfboard", "冲浪板", "sports"), ("tennis racket", "网球拍", "sports"),
    ("bottle", "瓶子", "kitchen"), ("wine glass", "酒杯", "kitchen"), ("cup", "杯子", "kitchen"),
    ("fork", "叉子", "kitchen"), ("knife", "刀", "kitchen"), ("spoon", "勺子", "kitchen"), ("bowl", "碗", "kitchen"),
    ("banana", "香蕉", "food"), ("apple", "苹果", "food"), ("sandwich", "三明治", "food"), ("orange", "橙子", "food"),
    ("broccoli", "西兰花", "food"), ("carrot", "胡萝卜", "food"), ("hot dog", "热狗", "food"), ("pizza", "披萨", "food"),
    ("donut", "甜甜圈", "food"), ("cake", "蛋糕", "food"), ("chair", "椅子", "home"), ("couch", "沙发", "home"),
    ("potted plant", "盆栽", "home"), ("bed", "床", "home"), ("dining table", "餐桌", "home"),
    ("toilet", "马桶", "home"), ("tv", "电视", "electronics"), ("laptop", "笔记本电脑", "electronics"),
    ("mouse", "鼠标", "electronics"), ("remote", "遥控器", "electronics"), ("keyboard", "键盘", "electronics"),
    ("cell phone", "手机", "electronics"), ("microwave", "微波炉", "electronics"), ("oven", "烤箱", "electronics"),
    ("toaster", "烤面包机", "electronics"), ("sink", "水槽", "home"), ("refrigerator", "冰箱", "electronics"),
    ("book", "书", "culture"), ("clock", "时钟", "home"), ("vase", "花瓶", "home"), ("scissors", "剪刀", "home"),
    ("teddy bear", "泰迪熊", "home"), ("hair drier", "吹风机", "electronics"), ("toothbrush", "牙刷", "home"),
]
assert len(COCO) == 80


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    wnid: str
    en: str
    zh: str
    category: str  # a CATEGORIES key
    kind: str  # object | scene (the V1 type)
    parent_en: str  # a broader tag ("dog" for every breed), or ""
    parent_zh: str
    coco: str  # the COCO class this is one of, or "": the tag then uses COCO's own word, as the detector does


@functools.cache
def imagenet_classes() -> list[ImageNetClass]:
    with open(Path(__file__).parent / "weights" / "imagenet_labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [ImageNetClass(int(r["index"]), r["wnid"], r["en"], r["zh"], r["category"], r["kind"], r["parent_en"],
                          r["parent_zh"], r["coco"]) for r in rows]


@functools.cache
def coco_by_name() -> dict[str, tuple[str, str, str]]:
    return {en: (en, zh, category) for en, zh, category in COCO}

"""Make imgrec/engines/weights/imagenet_labels.csv: the 1000 ImageNet-1k classes in the classifier's order,
with readable English and Chinese names, the reference-style category, the V1 kind, a parent tag and the
COCO name where one applies.

    python training/make_imagenet_labels.py      # needs the package registry once (pip download)

Sources, all from PyPI and pinned (each wheel is read as a zip, nothing is imported or installed):
- timm 1.0.31 `timm/data/_info/imagenet_synsets.txt`: the 1000 WNIDs; sorted, their position is the class
  index of the EfficientNet-Lite0 weights (verified: top-1 177/200 on ../shared/eval/imagenet-dev).
- open_clip_torch 3.3.0 `open_clip/zero_shot_metadata.py` `IMAGENET_CLASSNAMES`: curated readable English
  names ("tabby cat", not WordNet's "tabby, tabby cat"), in the same order.
- cn_clip 1.6.0 `cn_clip/eval/imagenet_zeroshot_templates.py` `imagenet_classnames`: the Chinese names
  (from the Wukong project's translation), in the same order.
Categories, kinds, parents and COCO names are this project's own assignment (the tables below): animals,
food, scenes, people and plants by the classes' well-known index ranges, artifacts class by class.
"""
from __future__ import annotations

import ast
import csv
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "imgrec" / "engines" / "weights" / "imagenet_labels.csv"
WHEELS = {"timm": "1.0.31", "open_clip_torch": "3.3.0", "cn_clip": "1.6.0"}


def _r(a: int, b: int) -> range:
    return range(a, b + 1)


# ------------------------------------------------------------------ parents (hypernym tags): en, zh, indices
PARENTS: list[tuple[str, str, list[range | int]]] = [
    ("fish", "鱼", [_r(0, 6), _r(389, 397)]),
    ("bird", "鸟", [_r(7, 24), _r(80, 100), _r(127, 146)]),
    ("salamander", "蝾螈", [_r(25, 29)]), ("frog", "蛙", [_r(30, 32)]), ("turtle", "龟", [_r(33, 37)]),
    ("lizard", "蜥蜴", [_r(38, 48)]), ("crocodile", "鳄鱼", [_r(49, 50)]), ("snake", "蛇", [_r(52, 68)]),
    ("spider", "蜘蛛", [_r(72, 77)]), ("crab", "蟹", [_r(118, 121), 125]), ("lobster", "龙虾", [_r(122, 124)]),
    ("whale", "鲸", [_r(147, 148)]), ("dog", "狗", [_r(151, 268)]), ("wolf", "狼", [_r(269, 271)]),
    ("fox", "狐狸", [_r(277, 280)]), ("cat", "猫", [_r(281, 285)]), ("big cat", "大型猫科动物", [_r(286, 293)]),
    ("bear", "熊", [_r(294, 297), 388]), ("beetle", "甲虫", [_r(300, 307)]), ("insect", "昆虫", [_r(308, 320)]),
    ("butterfly", "蝴蝶", [_r(321, 326)]), ("rabbit", "兔子", [_r(330, 332)]), ("rodent", "啮齿动物", [_r(333, 338)]),
    ("horse", "马", [339]), ("zebra", "斑马", [340]), ("pig", "猪", [_r(341, 343)]), ("cow", "牛", [_r(345, 347)]),
    ("sheep", "羊", [_r(348, 350)]), ("antelope", "羚羊", [_r(351, 353)]), ("monkey", "猴子", [_r(365, 384)]),
    ("elephant", "大象", [101, 385, 386]), ("mushroom", "蘑菇", [947, _r(991, 997)]),
    ("fruit", "水果", [_r(948, 957)]), ("vegetable", "蔬菜", [_r(936, 946)]),
    ("car", "汽车", [436, 468, 511, 609, 627, 656, 661, 751, 817, 407, 734]),
    ("truck", "卡车", [555, 569, 675, 717, 864, 867]), ("bus", "公共汽车", [654, 779, 874]),
    ("train", "火车", [466, 547, 565, 705, 820, 829]), ("boat", "船", [472, 484, 510, 554, 576, 625, 628, 724,
                                                                    780, 814, 833, 871, 914]),
    ("airplane", "飞机", [404, 895]), ("bicycle", "自行车", [444, 671]), ("motorcycle", "摩托车", [665, 670]),
    ("bottle", "瓶子", [440, 720, 737, 898, 907]), ("cup", "杯子", [504, 968]), ("bowl", "碗", [659, 809]),
    ("chair", "椅子", [423, 559, 765, 857]), ("clock", "时钟", [409, 530, 892]), ("ball", "球", [429, 430, 522, 574,
                                                                                           722, 768, 805, 852, 890]),
    ("tie", "领带", [451, 457, 906]), ("shoe", "鞋", [502, 514, 630, 770, 774]), ("hat", "帽子", [439, 452, 515, 667,
                                                                                             808]),
    ("guitar", "吉他", [402, 546]), ("piano", "钢琴", [579, 881]), ("bridge", "桥", [821, 839, 888]),
    ("shop", "商店", [415, 424, 454, 467, 509, 582, 788, 860, 865]), ("fence", "栅栏", [489, 716, 912]),
    ("computer", "电脑", [527, 590, 620, 681]), ("phone", "电话", [487, 528, 707]), ("camera", "相机", [732, 759]),
]
# Parents (or classes) that are COCO classes: the same word as the detector's label, so a photo gets one
# "dog" whether the detector or the classifier saw it. Parent en -> COCO name; and single classes -> COCO.
PARENT_COCO = {"bird": "bird", "cat": "cat", "dog": "dog", "horse": "horse", "sheep": "sheep", "cow": "cow",
               "elephant": "elephant", "bear": "bear", "zebra": "zebra", "car": "car", "truck": "truck",
               "bus": "bus", "train": "train", "boat": "boat", "airplane": "airplane", "bicycle": "bicycle",
               "motorcycle": "motorcycle", "bottle": "bottle", "cup": "cup", "bowl": "bowl", "chair": "chair",
               "clock": "clock", "ball": "sports ball", "tie": "tie"}
CLASS_COCO = {414: "backpack", 879: "umbrella", 748: "handbag", 795: "skis", 752: "tennis racket",
              954: "banana", 948: "apple", 950: "orange", 937: "broccoli", 934: "hot dog", 963: "pizza",
              831: "couch", 564: "bed", 520: "bed", 532: "dining table", 861: "toilet", 851: "tv", 664: "tv",
              782: "tv", 620: "laptop", 681: "laptop", 673: "mouse", 508: "keyboard", 487: "cell phone",
              651: "microwave", 859: "toaster", 760: "refrigerator", 883: "vase", 850: "teddy bear",
              589: "hair drier", 896: "sink", 920: "traffic light", 704: "parking meter", 703: "bench",
              441: "wine glass", 572: "wine glass", 910: "spoon", 499: "knife", 738: "potted plant"}

# ---------------------------------------------------------------------------- categories of the artifacts
ARTIFACTS: dict[str, list[int]] = {
    "vehicle": [475, 479, 581, 817, 820, 403, 404, 405, 407, 408, 417, 436, 444, 450, 466, 468, 472, 484, 510, 511, 537, 547, 554, 555,
                561, 565, 569, 573, 575, 576, 586, 595, 603, 609, 612, 625, 627, 628, 654, 656, 660, 661, 665,
                670, 671, 675, 690, 705, 717, 724, 730, 734, 751, 757, 779, 780, 802, 803, 812, 814, 829, 833,
                847, 856, 864, 866, 867, 870, 871, 874, 880, 895, 908, 913, 914],
    "apparel": [531, 570, 399, 400, 411, 414, 433, 439, 443, 445, 451, 452, 457, 459, 461, 465, 474, 490, 496, 501, 502,
                514, 515, 518, 524, 529, 552, 560, 568, 578, 584, 597, 601, 608, 610, 614, 615, 617, 629, 630,
                636, 638, 639, 643, 652, 655, 658, 667, 679, 689, 697, 715, 735, 748, 770, 774, 775, 793, 796,
                806, 808, 824, 834, 836, 837, 841, 842, 869, 879, 887, 893, 903, 906],
    "electronics": [508, 530, 480, 481, 482, 485, 487, 505, 527, 528, 534, 545, 550, 590, 592, 598, 605, 613, 620, 632,
                    650, 651, 662, 664, 673, 681, 685, 688, 707, 713, 732, 742, 745, 754, 759, 760, 761, 782, 786,
                    800, 810, 811, 844, 848, 851, 859, 878, 882, 886, 891, 897],
    "kitchen": [455, 827, 438, 440, 441, 469, 473, 499, 503, 504, 512, 521, 544, 567, 572, 618, 647, 653, 659, 666, 725,
                729, 737, 766, 773, 809, 813, 828, 849, 868, 898, 899, 901, 907, 909, 910, 923, 968],
    "home": [419, 551, 720, 409, 412, 423, 431, 434, 435, 453, 462, 463, 470, 478, 492, 493, 495, 516, 519, 520, 526, 532, 533,
             539, 548, 553, 556, 559, 564, 585, 588, 589, 591, 606, 619, 631, 648, 669, 700, 711, 721, 728, 738,
             741, 750, 753, 765, 771, 785, 790, 791, 794, 799, 804, 831, 838, 840, 846, 854, 857, 861, 876, 883,
             892, 894, 896, 904, 905, 911, 999],
    "culture": [398, 401, 402, 418, 420, 432, 446, 458, 486, 494, 513, 541, 542, 546, 549, 558, 563, 566, 577, 579,
                593, 594, 607, 641, 642, 683, 684, 687, 699, 709, 710, 714, 749, 767, 776, 822, 875, 881, 889,
                917, 918, 921, 922],
    "sports": [902, 416, 422, 429, 430, 456, 522, 543, 574, 602, 701, 702, 722, 736, 746, 747, 752, 758, 768, 795,
               797, 801, 805, 852, 890],
    "tool": [621, 676, 739, 426, 447, 464, 477, 488, 491, 506, 507, 523, 535, 540, 587, 596, 600, 604, 616, 622, 623, 626, 633,
             635, 644, 674, 677, 678, 680, 686, 691, 692, 693, 695, 696, 712, 726, 731, 740, 769, 772, 778, 783,
             784, 792, 798, 816, 818, 823, 826, 830, 835, 845, 855, 862, 872],
    "toy": [611, 719, 723, 850],
    "outdoor": [708, 410, 421, 427, 428, 448, 476, 489, 557, 562, 571, 637, 640, 645, 646, 694, 703, 704, 716, 733,
                756, 781, 807, 825, 843, 877, 900, 912, 919, 920],
    "building": [406, 415, 424, 425, 437, 442, 449, 454, 460, 467, 483, 497, 498, 500, 509, 517, 525, 536, 538,
                 580, 582, 624, 634, 649, 663, 668, 672, 682, 698, 706, 718, 727, 743, 755, 762, 788, 789, 819, 821,
                 832, 839, 853, 858, 860, 863, 865, 873, 884, 888, 915],
    "weapon": [413, 471, 583, 657, 744, 763, 764, 777, 787],
    "concept": [599, 815, 885, 916],
}
# Places rather than things: the V1 "scene" kind.
SCENE_CATEGORIES = {"building", "scene"}


def _expand(spec: list[range | int]) -> list[int]:
    out: list[int] = []
    for item in spec:
        out.extend(item if isinstance(item, range) else [item])
    return out


def category_of(index: int) -> str:
    if index <= 397:
        return "animal"
    if 924 <= index <= 969 and index != 968:
        return "food"
    if 970 <= index <= 980:
        return "scene"
    if 981 <= index <= 983:
        return "human"
    if 984 <= index <= 998:
        return "plant"
    for category, members in ARTIFACTS.items():
        if index in members:
            return category
    return "goods"  # an everyday object no table above names


def _wheel_member(wheel: Path, member: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member).decode("utf-8")


def _list_literal(source: str, variable: str) -> list[str]:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == variable for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise KeyError(variable)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for name, version in WHEELS.items():
            subprocess.run([sys.executable, "-m", "pip", "download", f"{name}=={version}", "--no-deps",
                            "--only-binary=:all:", "-d", tmp, "-q"], check=True)
        wheel = {name: next(Path(tmp).glob(f"{name}-{version}-*.whl")) for name, version in WHEELS.items()}
        wnids = _wheel_member(wheel["timm"], "timm/data/_info/imagenet_synsets.txt").split()
        english = _list_literal(_wheel_member(wheel["open_clip_torch"], "open_clip/zero_shot_metadata.py"),
                                "IMAGENET_CLASSNAMES")
        chinese = _list_literal(_wheel_member(wheel["cn_clip"], "cn_clip/eval/imagenet_zeroshot_templates.py"),
                                "imagenet_classnames")
    assert len(wnids) == len(english) == len(chinese) == 1000 and wnids == sorted(wnids)
    listed = [i for members in ARTIFACTS.values() for i in members]
    assert len(listed) == len(set(listed)), sorted({i for i in listed if listed.count(i) > 1})
    parent_of: dict[int, tuple[str, str]] = {}
    for en, zh, spec in PARENTS:
        for index in _expand(spec):
            parent_of.setdefault(index, (en, zh))
    rows = []
    for index, (wnid, en, zh) in enumerate(zip(wnids, english, chinese)):
        category = category_of(index)
        parent_en, parent_zh = parent_of.get(index, ("", ""))
        coco = CLASS_COCO.get(index) or PARENT_COCO.get(parent_en, "")
        kind = "scene" if category in SCENE_CATEGORIES else "object"
        rows.append([index, wnid, en.strip(), zh.strip().replace("；", "、"), category, kind, parent_en, parent_zh,
                     coco])
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    with open(TARGET, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "wnid", "en", "zh", "category", "kind", "parent_en", "parent_zh", "coco"])
        writer.writerows(rows)
    print(f"{TARGET}: {len(rows)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Data sets' public label tables: Cityscapes' labels, ADE20K's and VOC's class names.

Cityscapes' ``labels`` table of cityscapesScripts (tested against it) and its evaluator's
average instance sizes, ADE20K's 150 SceneParsing classes (the first name of each, as
mmsegmentation lists them), and the 20 PASCAL VOC classes plus background. Plain data,
read by the presets (:mod:`fastseg.dataset_presets`), the renderers and the synthetic
data writers.
"""

from __future__ import annotations

from typing import NamedTuple


class CityscapesLabel(NamedTuple):
    """One row of Cityscapes' label table: stored id, train id (255: not evaluated)."""

    name: str
    id: int
    train_id: int
    category: str
    has_instances: bool


#: Cityscapes' labels with a stored id (``*_gtFine_labelIds.png``), in id order; train id
#: 255 marks the labels the benchmark does not evaluate (``ignoreInEval``). The license
#: plate (id -1) is never stored and is left out.
CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = tuple(CityscapesLabel(*row) for row in (
    ("unlabeled", 0, 255, "void", False),
    ("ego vehicle", 1, 255, "void", False),
    ("rectification border", 2, 255, "void", False),
    ("out of roi", 3, 255, "void", False),
    ("static", 4, 255, "void", False),
    ("dynamic", 5, 255, "void", False),
    ("ground", 6, 255, "void", False),
    ("road", 7, 0, "flat", False),
    ("sidewalk", 8, 1, "flat", False),
    ("parking", 9, 255, "flat", False),
    ("rail track", 10, 255, "flat", False),
    ("building", 11, 2, "construction", False),
    ("wall", 12, 3, "construction", False),
    ("fence", 13, 4, "construction", False),
    ("guard rail", 14, 255, "construction", False),
    ("bridge", 15, 255, "construction", False),
    ("tunnel", 16, 255, "construction", False),
    ("pole", 17, 5, "object", False),
    ("polegroup", 18, 255, "object", False),
    ("traffic light", 19, 6, "object", False),
    ("traffic sign", 20, 7, "object", False),
    ("vegetation", 21, 8, "nature", False),
    ("terrain", 22, 9, "nature", False),
    ("sky", 23, 10, "sky", False),
    ("person", 24, 11, "human", True),
    ("rider", 25, 12, "human", True),
    ("car", 26, 13, "vehicle", True),
    ("truck", 27, 14, "vehicle", True),
    ("bus", 28, 15, "vehicle", True),
    ("caravan", 29, 255, "vehicle", True),
    ("trailer", 30, 255, "vehicle", True),
    ("train", 31, 16, "vehicle", True),
    ("motorcycle", 32, 17, "vehicle", True),
    ("bicycle", 33, 18, "vehicle", True),
))  # fmt: skip

#: The Cityscapes categories, in the order of the label table.
CITYSCAPES_CATEGORIES = ("void", "flat", "construction", "object", "nature", "sky", "human",
                         "vehicle")  # fmt: skip

#: ADE20K (SceneParsing, 150 classes), class index k = stored id k + 1.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea",
    "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe",
    "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine",
    "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel",
    "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike",
    "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

#: PASCAL VOC 2012 segmentation: background and the 20 object classes, by stored id.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

#: Cityscapes' average instance size per class with instances, in pixels: the official
#: evaluator's ``avgClassSize`` (``evalPixelLevelSemanticLabeling``), for the evaluated
#: classes (its caravan and trailer are not evaluated). Tested against cityscapesScripts.
CITYSCAPES_INSTANCE_SIZES = {
    "person": 3462.4756337644, "rider": 3930.4788056518, "car": 12794.0202738185,
    "truck": 27855.1264367816, "bus": 35732.1511111111, "train": 67583.7075812274,
    "motorcycle": 6298.7200839748, "bicycle": 4672.3249222261,
}  # fmt: skip

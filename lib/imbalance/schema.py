"""What a record is: its fields, its curves, its metric names and the record-file formats.

Torch-free; imports nothing from the package. The store, the trainer and the analysis all read it."""
from __future__ import annotations

# --- metrics: the one list of their names and labels ------------------------------------------------------
# a record's test metrics (training.metrics.all_metrics' names), per-class lists in label order
SCALAR_METRICS = ("roc_auc", "accuracy", "thresholded_accuracy", "balanced_accuracy", "macro_f1",
                  "macro_average_precision", "g_mean", "ece")
PER_CLASS_METRICS = ("per_class_recall", "per_class_precision")
# also measured on the validation split (`val_<m>`) and, with test_prior: both, on the test subsample that
# follows the training prior (`prior_<m>`): every scalar one but thresholded accuracy
VALIDATION_METRICS = tuple(m for m in SCALAR_METRICS if m != "thresholded_accuracy")
# what a table may list per method: the test metrics and the validation split's
TABLED_METRICS = (*SCALAR_METRICS, *(f"val_{m}" for m in VALIDATION_METRICS))
LOWER_IS_BETTER = ("ece",)      # never offered for ranking: winners and verdicts take higher as better
METRIC_LABELS = {"roc_auc": "multi-class ROC AUC", "accuracy": "accuracy",
                 "thresholded_accuracy": "accuracy after thresholding",
                 "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
                 "macro_average_precision": "macro average precision (PR-AUC)", "g_mean": "G-mean of the recalls",
                 "ece": "expected calibration error"}
METRIC_LABELS.update({f"val_{m}": f"{METRIC_LABELS[m]} (validation)" for m in VALIDATION_METRICS})
# the metrics a figure, a winner or a verdict may rank by (higher is better), with their labels
RANKED_METRICS = {m: METRIC_LABELS[m] for m in TABLED_METRICS
                  if m not in LOWER_IS_BETTER and m.removeprefix("val_") not in LOWER_IS_BETTER}
# metrics that thresholding (dividing each class's scores by its prior) cannot change: one-vs-rest ROC AUC
# ranks each class's scores alone, and a positive factor per class keeps that order.  Post-hoc logit
# adjustment renormalises each row (a softmax), so it can change them.
THRESHOLD_INVARIANT = ("roc_auc",)


# One row per network.  JSON_FIELDS hold lists/dicts, stored as JSON text.
NETWORK_FIELDS = (
    "study", "point_id", "dataset", "imbalance", "rho", "mu", "level", "method", "repeat", "seed",
    "n_train", "class_counts", "roc_auc", "accuracy", "thresholded_accuracy", "balanced_accuracy",
    "per_class_recall", "diverged", "diverged_at", "iterations", "train_seconds", "device",
    "versions", "git_rev", "created_at", "confusion_matrix",
    # added for your own data (issue 12); older databases gain them on open (_add_missing_columns)
    "classes", "macro_f1", "macro_average_precision", "g_mean", "ece", "per_class_precision",
    "validation", "n_validation", *(f"val_{m}" for m in VALIDATION_METRICS), "posthoc_tau", "tau_source",
    "test_prior", *(f"prior_{m}" for m in VALIDATION_METRICS),
    # added for the paper's selection protocols (issue 13): how the network's base lr was chosen
    "selection", "base_lr", "selection_score", "zca_fit",
    # added for faithful methods (issue 23): which failure rule stopped a failed network (`diverged` is its
    # flag: a failed network has no scores), and the fingerprint of its method's definition (registry)
    "failure", "method_fingerprint")


JSON_FIELDS = ("class_counts", "per_class_recall", "versions", "confusion_matrix", "classes", "per_class_precision")


CURVE_FIELDS = ("iteration", "lr", "train_loss", "train_accuracy", "test_accuracy")


RECORDS_FORMAT = "imbalance-records/1"  # the envelope of a records file


COPY_FORMAT = "imbalance-point/1"       # a done point's copy: its networks (with ids), curves, points row

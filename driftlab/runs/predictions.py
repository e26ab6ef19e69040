"""Class labels from a model's outputs, for every way Keras users write a classifier's head.

``Dense(n_classes, activation="softmax")`` gives one column per class: the label is
the argmax. ``Dense(1, activation="sigmoid")`` (the usual binary classifier) gives
one column, the probability of class 1: the label is ``p > 0.5``. A single column
with values outside [0, 1] is a logit (``from_logits=True``): the label is ``z > 0``.
"""

from __future__ import annotations

import numpy as np


def predicted_classes(pred: np.ndarray) -> np.ndarray:
    """Integer class labels (0-based) from predictions of shape (rows,), (rows, 1) or (rows, classes)."""
    pred = np.asarray(pred)
    if pred.ndim == 1 or pred.shape[1] == 1:
        score = pred.reshape(len(pred))
        probabilities = bool(np.all((score >= 0) & (score <= 1)))
        return (score > (0.5 if probabilities else 0.0)).astype(np.int32)
    return np.argmax(pred, axis=1).astype(np.int32)

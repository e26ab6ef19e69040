"""Write the gallery's data files from scikit-learn's bundled datasets (no download).

    cd examples/gallery && python data/make_data.py

- ``digits_images.npz``: the 1797 8×8 digits as images, ``x`` uint8 of shape
  (1797, 8, 8, 1) with values 0–16, ``y`` int64 labels 0–9;
- ``breast_cancer.csv``: the 569 Wisconsin breast cancer rows, 30 numeric
  feature columns and the target column ``diagnosis`` holding the text labels
  ``malignant`` / ``benign``.

Both files are written the same way on every run (same bytes).
"""

import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits

HERE = Path(__file__).resolve().parent


def digits_images(path: Path) -> None:
    digits = load_digits()
    x = digits.images.astype(np.uint8)[..., np.newaxis]  # (1797, 8, 8, 1), values 0..16
    y = digits.target.astype(np.int64)
    np.savez_compressed(path, x=x, y=y)


def breast_cancer(path: Path) -> None:
    data = load_breast_cancer()
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([name.replace(" ", "_") for name in data.feature_names] + ["diagnosis"])
        for row, label in zip(data.data, data.target):
            writer.writerow([repr(float(v)) for v in row] + [data.target_names[label]])


if __name__ == "__main__":
    digits_images(HERE / "digits_images.npz")
    breast_cancer(HERE / "breast_cancer.csv")
    for name in ("digits_images.npz", "breast_cancer.csv"):
        print(f"wrote {HERE / name} ({(HERE / name).stat().st_size:,} bytes)")

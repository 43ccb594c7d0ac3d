"""Small real datasets bundled with scikit-learn (no download), behind the optional extra
``specgrad[datasets]``. scikit-learn is imported only when a spec asks for one of them."""

from __future__ import annotations

import numpy as np

from specgrad.data.registry import SOURCES, DataError, points

# name -> (scikit-learn loader, per-sample shape of x, classes of y's labels or None for real values)
DATASETS = {
    "iris": ("load_iris", (4,), 3),  # 150 flowers, 4 measurements, 3 species
    "wine": ("load_wine", (13,), 3),  # 178 wines, 13 chemical measurements, 3 cultivars
    "breast_cancer": ("load_breast_cancer", (30,), 2),  # 569 tumours, 30 features, malignant (0) / benign (1)
    "digits": ("load_digits", (64,), 10),  # 1797 handwritten digits as 8x8 images (64 values 0..16)
    "diabetes": ("load_diabetes", (10,), None),  # 442 patients, 10 features, disease progression after a year
}


@SOURCES.register(
    "dataset",
    {"name": {"title": "dataset", "enum": list(DATASETS)}},
    required=["name"],
    fields=lambda settings: points(*DATASETS[settings["name"]][1:]),
)
def dataset(name):
    """a dataset bundled with scikit-learn: x (features, float) and y (int64 labels, or float for diabetes)"""
    try:
        import sklearn.datasets
    except ImportError:
        raise DataError(
            f"the '{name}' dataset comes with scikit-learn, which is not installed; "
            "install it with: pip install 'specgrad[datasets]'  (or: pip install scikit-learn)",
            ("name",),
        ) from None
    loader, _, classes = DATASETS[name]
    bunch = getattr(sklearn.datasets, loader)()
    y = np.asarray(bunch.target)
    return {"x": np.asarray(bunch.data, dtype=np.float64), "y": y.astype(np.float64 if classes is None else np.int64)}

"""Make an Optuna study the way you would without driftlab, for existing-study.yaml.

    cd examples/gallery && python make_study.py            # writes ./user-study.db
    python make_study.py --storage sqlite:////tmp/s.db     # or any Optuna storage URL / journal path

It tunes the breast cancer classifier of csv_models.py with plain Optuna: 4
trials, each a short real Keras fit, scored by validation accuracy (maximize).
A study of the same name already in that storage is replaced, so the script
can be run again. It finishes by printing the ``export`` line that tells
driftlab where the study is (driftlab only reads it).
"""

import argparse
import csv
import os
from pathlib import Path

import numpy as np
import optuna

HERE = Path(__file__).resolve().parent
STUDY = "user-study"
ENV = "OPTUNA_STORAGE"  # the variable existing-study.yaml names in tuning.storage_env


def load_data():
    with (HERE / "data" / "breast_cancer.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    header, rows = rows[0], rows[1:]
    t = header.index("diagnosis")
    x = np.array([[float(v) for i, v in enumerate(r) if i != t] for r in rows], dtype=np.float32)
    y = np.array([r[t] == "malignant" for r in rows], dtype=np.int64)  # benign 0, malignant 1 (sorted)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(0).permutation(len(x))
    val, train = order[:120], order[120:]
    return (x[train], y[train]), (x[val], y[val])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=f"sqlite:///{HERE / 'user-study.db'}",
                        help="Optuna storage: an RDB URL (sqlite:////abs/path.db, postgresql://...) or a journal "
                             "file path (default: sqlite file user-study.db next to this script)")
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ log lines
    import keras

    from csv_models import build

    (x_train, y_train), (x_val, y_val) = load_data()

    def objective(trial: optuna.Trial) -> float:
        hparams = {
            "units": trial.suggest_int("units", 8, 64, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 3e-4, 1e-2, log=True),
            "activation": trial.suggest_categorical("activation", ["relu", "tanh"]),
            "dropout": 0.1,
        }
        keras.utils.set_random_seed(trial.number)
        model = build(hparams, n_features=x_train.shape[1], n_outputs=2, task="classification")
        model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
        _, accuracy = model.evaluate(x_val, y_val, verbose=0)
        return accuracy

    storage = args.storage
    if "://" not in storage:  # a journal file path, as driftlab and Optuna's CLI read it
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(Path(args.storage).absolute())))
    if STUDY in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        optuna.delete_study(study_name=STUDY, storage=storage)
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=args.trials)
    print(f"study '{STUDY}': {len(study.trials)} trials, best #{study.best_trial.number} "
          f"accuracy {study.best_value:.4f} with {study.best_params}")
    print("Tell driftlab where it is, then run the experiment:")
    print(f"  export {ENV}={args.storage}")
    print("  PYTHONPATH=. driftlab run existing-study.yaml")


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main()

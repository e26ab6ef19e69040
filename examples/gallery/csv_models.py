"""A tabular binary classifier, written the way Keras tutorials write one.

Every hyperparameter goes straight into a layer or the optimizer: ``units`` is
an int, ``dropout`` and ``learning_rate`` are floats, ``activation`` is a
string (driftlab hands each one over with the type its search_space gives it).
The CSV's text labels (``benign`` / ``malignant``) become classes 0 and 1, in
sorted order, so ``n_outputs`` is 2.
"""

import keras


def build(hparams, *, n_features, n_outputs, task):
    model = keras.Sequential([
        keras.Input((n_features,)),
        keras.layers.Dense(hparams["units"], activation=hparams["activation"]),
        keras.layers.Dropout(hparams["dropout"]),
        keras.layers.Dense(hparams["units"] // 2, activation=hparams["activation"]),
        keras.layers.Dense(n_outputs, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=hparams["learning_rate"]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model

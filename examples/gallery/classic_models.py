"""The model of the classic "why are my Keras results inconsistent?" question.

Written exactly as the question writes it: a Sequential model with no Input
layer (Keras builds it on the first batch), Adam and mean squared error.
driftlab calls ``build(hparams, n_features=..., n_outputs=..., task=...)``.
"""

import keras


def build(hparams, *, n_features, n_outputs, task):
    model = keras.Sequential([
        keras.layers.Dense(hparams["units"], activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(hparams["learning_rate"]), loss="mse")
    return model

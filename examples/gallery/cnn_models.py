"""A small functional-API CNN for 8×8 grayscale digits.

The builder takes ``input_shape``, so driftlab passes the shape of one image,
(8, 8, 1), instead of flattening the images to 64 values. It returns the model
uncompiled: driftlab compiles it with ``hparams["optimizer"]`` (default adam)
and ``hparams["learning_rate"]``, and sparse categorical cross-entropy.
"""

import keras


def build(hparams, *, n_features, n_outputs, task, input_shape):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(hparams["filters"], hparams["kernel"], activation=hparams["activation"])(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(n_outputs, activation="softmax")(x)
    return keras.Model(inputs, outputs)

"""AlexNet, its optimiser and its learning-rate schedule, from an Arm (Keras 3 APIs only)."""

from __future__ import annotations

import keras

from valstat.config import ModelConfig, ScheduleConfig, TrainingConfig

ALEXNET_FILTERS = (96, 256, 384, 384, 256)
ALEXNET_KERNELS = (11, 5, 3, 3, 3)


def alexnet_filters(width: float) -> list[int]:
    return [max(4, int(round(f * width))) for f in ALEXNET_FILTERS]


def build_alexnet(image_size: int, n_classes: int, config: ModelConfig,
                  seed: int = 0) -> keras.Model:
    """AlexNet (Krizhevsky et al. 2012, single-tower): five convolutions, three max-pools,
    two dense layers with dropout, softmax. Input (image_size, image_size, 3) uint8-range floats.

    `width` scales the filter counts; pools switch to 'same' padding only where the feature map
    would otherwise vanish (inputs far below 227 px), so 227 px gives the classic 55-27-13-6 maps.
    Every initialiser and dropout layer gets its own seed derived from `seed`, so the weights
    never depend on Python's global random state (which other threads, e.g. Dask's, also use).
    """
    seeds = iter(range(seed * 100, seed * 100 + 100))

    def init():
        return keras.initializers.GlorotUniform(seed=next(seeds))

    filters = alexnet_filters(config.width)
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    size = image_size
    for index, (count, kernel) in enumerate(zip(filters, ALEXNET_KERNELS)):
        first = index == 0
        x = keras.layers.Conv2D(count, kernel, strides=4 if first else 1,
                                padding="valid" if first else "same",
                                activation=None if config.batch_norm else "relu",
                                kernel_initializer=init())(x)
        if first:
            size = (size - kernel) // 4 + 1
        if config.batch_norm:
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Activation("relu")(x)
        if index in (0, 1, 4):
            padding = "valid" if size >= 3 else "same"
            x = keras.layers.MaxPooling2D(3, strides=2, padding=padding)(x)
            size = (size - 3) // 2 + 1 if padding == "valid" else (size + 1) // 2
    x = keras.layers.Flatten()(x)
    for _ in range(2):
        x = keras.layers.Dense(config.dense_units, activation="relu", kernel_initializer=init())(x)
        x = keras.layers.Dropout(config.dropout, seed=next(seeds))(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", kernel_initializer=init())(x)
    model = keras.Model(inputs, outputs, name="alexnet")
    model.valstat_seed = seed   # the seed its layers' initialisers and dropout streams derive from
    return model


def reseed_alexnet(model: keras.Model, seed: int) -> None:
    """Put `model` (from build_alexnet) in exactly the state build_alexnet(..., seed) would give:
    every kernel redrawn by its seeded initialiser with the seed shifted to `seed`, biases and
    batch-norm variables back to their initial values, every dropout stream restarted.

    Lets a worker keep one compiled model and its traced train/predict functions for many runs.
    """
    shift = (seed - model.valstat_seed) * 100
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            old = layer.kernel_initializer
            fresh = type(old).from_config({**old.get_config(), "seed": old.seed + shift})
            layer.kernel_initializer = fresh
            layer.kernel.assign(fresh(layer.kernel.shape, dtype=layer.kernel.dtype))
            if layer.bias is not None:
                layer.bias.assign(layer.bias_initializer(layer.bias.shape, dtype=layer.bias.dtype))
        elif isinstance(layer, keras.layers.BatchNormalization):
            for name in ("gamma", "beta", "moving_mean", "moving_variance"):
                variable = getattr(layer, name, None)
                if variable is not None:
                    initializer = getattr(layer, f"{name}_initializer")
                    variable.assign(initializer(variable.shape, dtype=variable.dtype))
        elif isinstance(layer, keras.layers.Dropout):
            layer.seed = layer.seed + shift
            layer.seed_generator.state.assign(
                keras.ops.convert_to_tensor([layer.seed, 0],
                                            dtype=layer.seed_generator.state.dtype))
        elif layer.weights:
            raise TypeError(f"reseed_alexnet does not know how to reset layer {layer.name}")
    model.valstat_seed = seed


def build_optimizer(config: TrainingConfig) -> keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=config.learning_rate)
    return keras.optimizers.Adam(learning_rate=config.learning_rate)


def build_schedule(config: ScheduleConfig, monitor_mode: str = "auto") -> list:
    """Keras callbacks that change the learning rate (empty for a constant rate)."""
    if config.kind == "constant":
        return []
    return [keras.callbacks.ReduceLROnPlateau(
        monitor=config.monitor, factor=config.factor, patience=config.patience,
        min_delta=config.min_delta, min_lr=config.min_lr, mode=monitor_mode, verbose=0)]


"""Training engines beyond the one-run TensorFlow path in valstat.train.

device.py: `--device auto|cpu|gpu` -> Engine (backend, device, fused or not), runtime report.
fused.py:  K runs of one arm as one compiled program on Keras's JAX backend (train_pack).
Neither imports Keras, TensorFlow or JAX at module import time.
"""

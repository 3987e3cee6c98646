"""ls_jax: label smoothing, the confidence penalty, Mixup/CutMix, label noise and calibration in JAX.

Modules are imported explicitly (`from ls_jax import losses`), so that using the losses does not
pull in the training stack (TFDS, Orbax, grain).
"""
__version__ = "0.1.0"

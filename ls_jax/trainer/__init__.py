"""The trainer: config and its checks, the method table, data, the step and the loop, sharding and
feeds, evaluation, checkpoints, signals and the command line. It imports the library (losses,
mixing, noise, calibration, statistics, models), never an experiment (`ls_jax.experiments`).
"""

"""Experiments: sweeps, finished runs as rows with paired statistics, and one report per experiment.

Imports the library and the trainer; nothing in either imports this package.
"""

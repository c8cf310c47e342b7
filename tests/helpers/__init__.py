"""Helpers shared by the test directories: ``from tests.helpers.<module> import ...``.

:mod:`~tests.helpers.models` (small models with transposed convolutions, and
the layers Keras tracks in one), :mod:`~tests.helpers.serving` (serving
SavedModels from a process that cannot import the project) and
:mod:`~tests.helpers.png` (what a PNG file starts with).
"""

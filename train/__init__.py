"""Training application: Hydra-configured autoencoders that compare
``SegregatedConv2DTranspose`` with Keras's and the zero-insertion transpose
convolution.

Run ``python -m train`` (see :mod:`train.__main__`); compare a sweep with
``python -m train.compare SWEEP_DIR``. The package root imports nothing heavy
so that :mod:`train.compare` starts without TensorFlow.
"""

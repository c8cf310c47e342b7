"""The TensorFlow backend: lowerings on tf.nn.conv2d, gradients on TensorFlow's kernels, the op."""

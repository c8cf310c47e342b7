"""The JAX backend: lowerings on jax.lax stride-1 convolutions, their gradients, the op."""

"""How ``implementation="auto"`` chooses, on every backend: static rules, measurement, cache,
lowering target."""

"""The rule ``implementation="auto"`` uses to pick a lowering per layer shape."""

from __future__ import annotations

from keras_tconv.ops.phases import AxisPlan


def stacked_waste(plan_h: AxisPlan, plan_w: AxisPlan) -> float:
    """Multiplications of the stacked ("unified") kernel per useful one."""
    useful = taps = 1
    for plan in (plan_h, plan_w):
        low, high = plan.union_offsets
        window = high - low + 1
        taps *= window * plan.stride
        useful *= plan.geometry.kernel_size
    return taps / useful


def choose_implementation(input_shape, kernel_shape, plan_h: AxisPlan, plan_w: AxisPlan) -> str:
    """Pick "split" or "unified" from static shapes.

    Provisional rule: unified when stacking wastes no multiplications.
    """
    return "unified" if stacked_waste(plan_h, plan_w) <= 1.0 else "split"

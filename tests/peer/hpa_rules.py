"""generateScalingRules of Kubernetes' horizontal_test.go, shared by the HPA peer tests."""

from __future__ import annotations

from capsim.autoscale.hpa import ScalingPolicy, ScalingRules


def rules(pods: int, pods_period: int, percent: int, percent_period: int, window: int) -> ScalingRules:
    """generateScalingRules: a Pods and/or a Percent policy (the HPA selects Max) and a window."""
    policies = []
    if pods:
        policies.append(ScalingPolicy(type="Pods", value=pods, period_s=pods_period))
    if percent:
        policies.append(ScalingPolicy(type="Percent", value=percent, period_s=percent_period))
    return ScalingRules(stabilization_window_s=window, policies=policies)

"""The upstream test files the peer tests port, with the commit read.

Each ported case names its upstream file and test (or table row); the inputs and expected values are
copied from there, the code is capsim's. Cases whose inputs capsim cannot express are listed in
docs/model.md ("Agreement with the upstream unit tests") with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Upstream:
    """One upstream test file at the commit read."""

    repo: str
    commit: str
    path: str

    def cite(self, test: str) -> str:
        """`repo@commit path::test`, the id of a ported case."""
        return f"{self.repo}@{self.commit[:12]} {self.path}::{test}"


K8S_REPLICA_CALCULATOR = Upstream(
    "kubernetes/kubernetes",
    "00067268967ec95a40035bd666374a1caf48dd1a",
    "pkg/controller/podautoscaler/replica_calculator_test.go",
)
K8S_HORIZONTAL = Upstream(
    "kubernetes/kubernetes",
    "003e86297d18a8538c9da3619871393f9703bf70",
    "pkg/controller/podautoscaler/horizontal_test.go",
)
KNATIVE_AUTOSCALER = Upstream(
    "knative/serving", "98e5ef90aa7033797aa0a61ef97f3ff7e49a3944", "pkg/autoscaler/scaling/autoscaler_test.go"
)
KNATIVE_TARGET = Upstream(
    "knative/serving", "98e5ef90aa7033797aa0a61ef97f3ff7e49a3944", "pkg/reconciler/autoscaling/resources/target_test.go"
)
KNATIVE_METRIC = Upstream(
    "knative/serving", "98e5ef90aa7033797aa0a61ef97f3ff7e49a3944", "pkg/reconciler/autoscaling/resources/metric_test.go"
)
KEDA_EXECUTOR = Upstream(
    "kedacore/keda", "8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a", "pkg/scaling/executor/scale_scaledobjects_test.go"
)
KEDA_SCALEDOBJECT = Upstream(
    "kedacore/keda", "8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a", "apis/keda/v1alpha1/scaledobject_types_test.go"
)
RAY_TEST_FILE = "python/ray/serve/tests/unit/test_autoscaling_policy.py"
RAY_POLICY = Upstream("ray-project/ray", "01624ad4bacdc5cf9a284a2cb376a4aff0682ccd", RAY_TEST_FILE)
RAY_POLICY_OLD = Upstream("ray-project/ray", "8244b65991b1b74e1c7a1fc1cb3d3590c9a0f67b", RAY_TEST_FILE)
KEDA_FALLBACK = Upstream("kedacore/keda", "8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a", "pkg/fallback/fallback_test.go")
KNATIVE_SCALER = Upstream(
    "knative/serving", "98e5ef90aa7033797aa0a61ef97f3ff7e49a3944", "pkg/reconciler/autoscaling/kpa/scaler_test.go"
)
KNATIVE_DECIDER = Upstream(
    "knative/serving",
    "98e5ef90aa7033797aa0a61ef97f3ff7e49a3944",
    "pkg/reconciler/autoscaling/kpa/resources/decider_test.go",
)

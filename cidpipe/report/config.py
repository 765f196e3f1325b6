"""The recipe's ``report`` section."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializationInfo, SerializerFunctionWrapHandler, model_serializer

from cidpipe.sections import Section, for_display


class ReportConfig(Section):
    enabled: bool = True
    html: bool = Field(True, description="also write a self-contained report.html")
    latency: Literal["p50", "p99"] = Field(
        "p50",
        description="latency on the accuracy plot: p50 (what a user feels) or p99 (noisy in short runs)",
    )
    trackers: list[Literal["tensorboard", "mlflow", "csv"]] = Field(
        default_factory=list,
        description="per-epoch metrics and loss parts of every training stage, logged to TensorBoard "
        "(runs/<name>/tracking/) and/or MLflow (MLFLOW_TRACKING_URI, else ./mlruns); history.csv is "
        "always written, so csv changes nothing",
    )

    @model_serializer(mode="wrap")
    def _omit_default_trackers(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # The recipe id hashes the dumped recipe: without trackers it dumps as before, so ids do not change.
        # (Tracking never changes what is trained, so it is no part of any stage's config either.)
        dumped = handler(self)
        if for_display(info):
            return dumped
        if not self.trackers:
            dumped.pop("trackers", None)
        return dumped

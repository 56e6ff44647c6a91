"""The run configuration: one YAML file, validated up front, with dotted overrides."""

from tunesmith.config.loading import apply_overrides, load_config, to_dict
from tunesmith.config.schema import (
    AuditConfig,
    DataConfig,
    EvalConfig,
    ExportConfig,
    MethodConfig,
    ModelConfig,
    ObjectiveConfig,
    RunConfig,
    TrainingConfig,
)

__all__ = ["AuditConfig", "DataConfig", "EvalConfig", "ExportConfig", "MethodConfig",
           "ModelConfig", "ObjectiveConfig", "RunConfig", "TrainingConfig", "apply_overrides",
           "load_config", "to_dict"]

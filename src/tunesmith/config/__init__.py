"""The run configuration: one YAML file, validated up front, with dotted overrides."""

from tunesmith.config.schema import (
    DataConfig,
    EvalConfig,
    ExportConfig,
    MethodConfig,
    ModelConfig,
    ObjectiveConfig,
    RunConfig,
    TrainingConfig,
)
from tunesmith.config.loading import apply_overrides, load_config, to_dict

__all__ = ["DataConfig", "EvalConfig", "ExportConfig", "MethodConfig", "ModelConfig",
           "ObjectiveConfig", "RunConfig", "TrainingConfig", "apply_overrides", "load_config", "to_dict"]

"""Pre/post-processing pipelines of `flow_vla`, in LeRobot's processor format.

The step list mirrors SmolVLA's on purpose: LeRobot's record/train/eval code overrides the steps named
`rename_observations_processor`, `device_processor`, `normalizer_processor` and `unnormalizer_processor` when
it loads a checkpoint, and fails with a KeyError if one is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from lerobot.processor import (
    AddBatchDimensionProcessorStep,
    DeviceProcessorStep,
    NormalizerProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    ProcessorStepRegistry,
    RenameObservationsProcessorStep,
    TokenizerProcessorStep,
    UnnormalizerProcessorStep,
)
from lerobot.processor.converters import (
    policy_action_to_transition,
    transition_to_policy_action,
)
from lerobot.utils.constants import (
    POLICY_POSTPROCESSOR_DEFAULT_NAME,
    POLICY_PREPROCESSOR_DEFAULT_NAME,
)

from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import (
    BYTE_TOKENIZER,
    FlowVLAConfig,
)
from lerobot_vla_plugin.policies.flow_vla.tokenizer import ByteTokenizer


@ProcessorStepRegistry.register(name="flow_vla_tokenizer")
@dataclass
class FlowVLATokenizerProcessorStep(TokenizerProcessorStep):
    """LeRobot's tokenizer step, plus the built-in byte tokenizer (`tokenizer_name="bytes"`).

    Only the name is saved, so a checkpoint of the small model loads offline with no tokenizer files.
    """

    tokenizer_name: str | None = BYTE_TOKENIZER
    padding: str = "max_length"

    def __post_init__(self):
        if self.tokenizer is None and self.tokenizer_name == BYTE_TOKENIZER:
            self.input_tokenizer = ByteTokenizer()
            return
        super().__post_init__()


def make_flow_vla_pre_post_processors(
    config: FlowVLAConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """Pre: rename → batch dim → tokenize task → device → normalise. Post: unnormalise → CPU."""
    input_steps = [
        RenameObservationsProcessorStep(rename_map={}),
        AddBatchDimensionProcessorStep(),
        FlowVLATokenizerProcessorStep(
            tokenizer_name=config.text_tokenizer_name,
            max_length=config.tokenizer_max_length,
            padding="max_length",
            padding_side="right",
        ),
        DeviceProcessorStep(device=config.device),
        NormalizerProcessorStep(
            features={**config.input_features, **config.output_features},
            norm_map=config.normalization_mapping,
            stats=dataset_stats,
            # The object positions stay in metres: an object that never moves has a standard deviation near
            # zero, and dividing by it turns simulation jitter into a large, unlearnable target. Saved with the
            # step, so it holds when lerobot-train fine-tunes a checkpoint and replaces the features and stats.
            normalize_observation_keys={key for key in config.input_features if key not in (
                config.object_positions_key, config.object_start_positions_key, config.object_named_positions_key)}
            or None,
        ),
    ]
    output_steps = [
        UnnormalizerProcessorStep(
            features=config.output_features, norm_map=config.normalization_mapping, stats=dataset_stats
        ),
        DeviceProcessorStep(device="cpu"),
    ]
    return (
        PolicyProcessorPipeline[dict[str, Any], dict[str, Any]](
            steps=input_steps, name=POLICY_PREPROCESSOR_DEFAULT_NAME
        ),
        PolicyProcessorPipeline[PolicyAction, PolicyAction](
            steps=output_steps,
            name=POLICY_POSTPROCESSOR_DEFAULT_NAME,
            to_transition=policy_action_to_transition,
            to_output=transition_to_policy_action,
        ),
    )

"""The pretrained-backbone path loads a SmolVLM-style model with `transformers`, offline, from a local dir.

The test writes a tiny random SmolVLM (config, weights, tokenizer) to a temp directory; the loading code is
the same one that loads `HuggingFaceTB/SmolVLM2-500M-Video-Instruct` from the Hub.
"""

from __future__ import annotations

import pytest
import torch

from lerobot_vla_plugin.bench.policy import write_tiny_smolvlm
from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import (
    make_flow_vla_pre_post_processors,
)

from .conftest import make_raw_batch, make_tiny_config

transformers = pytest.importorskip("transformers")


@pytest.fixture
def tiny_backbone_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = write_tiny_smolvlm(tmp_path / "tiny_smolvlm")
    return directory, transformers.SmolVLMForConditionalGeneration.from_pretrained(directory)


def test_pretrained_backbone_loads_offline_trains_and_acts(tiny_backbone_dir, tmp_path):
    directory, reference = tiny_backbone_dir
    config = make_tiny_config(backbone="pretrained", pretrained_backbone=str(directory), num_backbone_layers=2)
    policy = FlowVLAPolicy(config)
    encoder = policy.model.prefix_encoder

    # The first N decoder layers are kept, the weights are the saved ones, the vision tower is frozen.
    assert len(encoder.text_model.layers) == 2
    torch.testing.assert_close(
        encoder.vision_model.embeddings.patch_embedding.weight,
        reference.model.vision_model.embeddings.patch_embedding.weight,
    )
    assert not any(p.requires_grad for p in encoder.vision_model.parameters())
    assert all(p.requires_grad for p in encoder.text_model.parameters())
    trainable = {id(p) for p in policy.get_optim_params()}
    assert not any(id(p) in trainable for p in encoder.vision_model.parameters())

    # The preprocessor tokenizes with the backbone's own tokenizer.
    preprocessor, _ = make_flow_vla_pre_post_processors(config, dataset_stats=None)
    batch = preprocessor(make_raw_batch(config, batch_size=2, task="pick the red cube"))
    backbone_tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    words = backbone_tokenizer.convert_tokens_to_ids(["pick", "the", "red", "cube"])
    assert batch["observation.language.tokens"][0, :4].tolist() == words

    policy.train()
    loss, _ = policy.forward(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert encoder.text_model.layers[0].self_attn.q_proj.weight.grad is not None
    assert encoder.vision_model.embeddings.patch_embedding.weight.grad is None
    assert policy.predict_action_chunk(batch).shape == (2, config.chunk_size, 6)

    # A checkpoint of it reloads (the backbone directory is only needed for its config and tokenizer).
    policy.save_pretrained(tmp_path / "checkpoint")
    reloaded = FlowVLAPolicy.from_pretrained(tmp_path / "checkpoint")
    noise = torch.randn(2, config.chunk_size, config.max_action_dim)
    torch.testing.assert_close(
        policy.predict_action_chunk(batch, noise=noise), reloaded.predict_action_chunk(batch, noise=noise)
    )


def test_missing_backbone_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = make_tiny_config(backbone="pretrained", pretrained_backbone=str(tmp_path / "does_not_exist"))
    with pytest.raises(OSError, match="local directory or a Hub id"):
        FlowVLAPolicy(config)

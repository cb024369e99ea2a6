"""Stock `lerobot-train` trains flow_vla, and `--policy.path` fine-tunes the checkpoint it wrote."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import make_pre_post_processors
from safetensors.torch import load_file

from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy

from .conftest import CHUNK, IMAGE_KEY, TINY_POLICY_FLAGS

LEROBOT_TRAIN = str(Path(sys.executable).parent / "lerobot-train")
# lerobot-train's progress line (MetricsTracker): "step:4 smpl:16 ep:1 epch:0.44 loss:0.812 grdn:..."
TRAIN_LOG_LINE = re.compile(r"step:(\d+) smpl:\S+ ep:\S+ epch:\S+ loss:(\S+)")


def run_lerobot_train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_LEROBOT_HOME": str(tmp_path / "hf_lerobot"),
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run([LEROBOT_TRAIN, *args], capture_output=True, text=True, env=env, timeout=240, check=False)
    assert result.returncode == 0, f"lerobot-train failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def common_flags(dataset_root: Path, output_dir: Path, steps: int) -> list[str]:
    return [
        "--dataset.repo_id=local/flow_vla_tiny",
        f"--dataset.root={dataset_root}",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        f"--steps={steps}",
        "--batch_size=4",
        "--num_workers=0",
        "--log_freq=1",
        f"--save_freq={steps}",
        "--eval_freq=0",
        "--wandb.enable=false",
        f"--output_dir={output_dir}",
    ]


@pytest.fixture(scope="module")
def trained_checkpoint(tiny_dataset_root, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("train")
    output_dir = tmp_path / "out"
    result = run_lerobot_train(
        ["--policy.type=flow_vla", *TINY_POLICY_FLAGS, *common_flags(tiny_dataset_root, output_dir, steps=4)],
        tmp_path,
    )
    return output_dir / "checkpoints" / "000004" / "pretrained_model", result


@pytest.mark.slow
def test_lerobot_train_writes_a_loadable_checkpoint(trained_checkpoint, tiny_dataset_root):
    checkpoint, result = trained_checkpoint
    # Training ran: each of the 4 steps logged a finite loss, and each took an optimizer step on every parameter.
    logged = TRAIN_LOG_LINE.findall(result.stdout + result.stderr)
    assert [int(step) for step, _ in logged] == [1, 2, 3, 4], result.stderr[-3000:]
    assert all(math.isfinite(float(loss)) and float(loss) > 0 for _, loss in logged)
    training_state = checkpoint.parent / "training_state"
    assert json.loads((training_state / "training_step.json").read_text())["step"] == 4
    optimizer = load_file(training_state / "optimizer_state.safetensors")
    adam_steps = {k: float(v) for k, v in optimizer.items() if k.endswith("/step")}
    assert len(adam_steps) == len(list(FlowVLAPolicy.from_pretrained(checkpoint).parameters()))
    assert set(adam_steps.values()) == {4.0}
    assert all(v.abs().sum() > 0 for k, v in optimizer.items() if k.endswith("/exp_avg"))
    assert json.loads((checkpoint / "train_config.json").read_text())["policy"]["type"] == "flow_vla"
    for name in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json",
                 "train_config.json"):
        assert (checkpoint / name).is_file(), name
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["type"] == "flow_vla" and config["chunk_size"] == CHUNK

    # Load it the way lerobot-record does (device and rename overrides by step name) and act.
    policy = FlowVLAPolicy.from_pretrained(checkpoint)
    preprocessor, postprocessor = make_pre_post_processors(
        policy.config,
        pretrained_path=str(checkpoint),
        preprocessor_overrides={
            "device_processor": {"device": "cpu"},
            "rename_observations_processor": {"rename_map": {}},
        },
    )
    frame = LeRobotDataset("local/flow_vla_tiny", root=tiny_dataset_root)[5]
    observation = {
        "observation.state": frame["observation.state"],
        IMAGE_KEY: frame[IMAGE_KEY],
        "task": frame["task"],
    }
    action = postprocessor(policy.select_action(preprocessor(observation)))
    assert action.shape == (1, 6) and torch.isfinite(action).all()
    # Unnormalised with the dataset's statistics: actions are state + 0.1 with state in [-1, 1].
    assert action.abs().max() < 10


@pytest.mark.slow
def test_policy_path_fine_tunes_the_checkpoint(trained_checkpoint, tiny_dataset_root, tmp_path):
    checkpoint, _ = trained_checkpoint
    output_dir = tmp_path / "finetune"
    run_lerobot_train([f"--policy.path={checkpoint}", *common_flags(tiny_dataset_root, output_dir, steps=2)], tmp_path)
    tuned = output_dir / "checkpoints" / "000002" / "pretrained_model"
    assert json.loads((tuned / "config.json").read_text())["dim_model"] == 32  # architecture kept
    before = FlowVLAPolicy.from_pretrained(checkpoint).state_dict()
    after = FlowVLAPolicy.from_pretrained(tuned).state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_lerobot_train_resumes_an_interrupted_run(trained_checkpoint, tmp_path):
    checkpoint, _ = trained_checkpoint
    run_dir = checkpoint.parents[2]
    run_lerobot_train(
        [f"--config_path={checkpoint / 'train_config.json'}", "--resume=true", "--steps=6", "--save_freq=6"], tmp_path
    )
    # Writing into the existing run directory is only allowed when resuming; it continues from step 4.
    resumed = run_dir / "checkpoints" / "000006" / "pretrained_model"
    assert (resumed / "model.safetensors").is_file()
    state = json.loads((run_dir / "checkpoints" / "000006" / "training_state" / "training_step.json").read_text())
    assert state["step"] == 6

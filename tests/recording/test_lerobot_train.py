"""Stock `lerobot-train` trains on a dataset written by the crash-safe recorder (video, as recorded by default)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lerobot_vla_plugin.recording import CrashSafeRecorder

from .conftest import FEATURES, FPS, REPO_ID, record_takes

LEROBOT_TRAIN = str(Path(sys.executable).parent / "lerobot-train")
TINY_ACT = ["--policy.type=act", "--policy.pretrained_backbone_weights=null", "--policy.dim_model=64",
            "--policy.n_heads=2", "--policy.dim_feedforward=64", "--policy.n_encoder_layers=1",
            "--policy.n_decoder_layers=1", "--policy.chunk_size=4", "--policy.n_action_steps=4", "--batch_size=2",
            "--steps=2", "--num_workers=0", "--policy.push_to_hub=false", "--policy.device=cpu"]


@pytest.mark.slow
def test_lerobot_train_runs_on_a_recorded_dataset(tmp_path):
    root = tmp_path / "dataset"
    with CrashSafeRecorder.create(REPO_ID, root, fps=FPS, robot_type="vla_so101_follower", features=FEATURES,
                                  encode_in_subprocess=False) as recorder:
        record_takes(recorder, 0, range(3), frames=5)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_LEROBOT_HOME": str(tmp_path / "hf_lerobot"),
           "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([LEROBOT_TRAIN, f"--dataset.repo_id={REPO_ID}", f"--dataset.root={root}", *TINY_ACT,
                             "--save_freq=2", "--log_freq=1", "--wandb.enable=false",
                             f"--output_dir={tmp_path / 'train'}"],
                            check=False, capture_output=True, text=True, env=env, timeout=280)
    assert result.returncode == 0, f"lerobot-train failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    checkpoint = tmp_path / "train/checkpoints/000002/pretrained_model"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "config.json").is_file()

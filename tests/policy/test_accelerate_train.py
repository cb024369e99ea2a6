"""Stock `lerobot-train` trains flow_vla in two processes on a CPU through `accelerate launch`.

accelerate starts several processes only through its multi-GPU launcher (torchrun): its `--cpu` launcher starts
one process unless an MPI host file is given. With `--policy.device=cpu`, lerobot-train's Accelerator is a CPU one,
so the two processes synchronise their gradients over gloo on the CPU (the command recipes/README.md documents).
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TINY_POLICY_FLAGS
from .test_lerobot_train import LEROBOT_TRAIN, TRAIN_LOG_LINE, common_flags

ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_with_accelerate_launch_on_cpu(tiny_dataset_root, tmp_path):
    output_dir = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_LEROBOT_HOME": str(tmp_path / "hf_lerobot"),
           "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    command = [ACCELERATE, "launch", "--multi_gpu", "--num_processes=2", "--num_machines=1",
               "--mixed_precision=no", "--dynamo_backend=no", f"--main_process_port={_free_port()}",
               LEROBOT_TRAIN, "--policy.type=flow_vla", *TINY_POLICY_FLAGS,
               *common_flags(tiny_dataset_root, output_dir, steps=3)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]

    # The Accelerator counted two processes (gloo, on the CPU), and each took a batch of 4 per step.
    assert "Effective batch size: 4 x 2 = 8" in log, log[-3000:]
    assert "[Gloo]" in log
    logged = TRAIN_LOG_LINE.findall(log)
    assert [int(step) for step, _ in logged] == [1, 2, 3]
    assert all(math.isfinite(float(loss)) for _, loss in logged)
    samples = [int(n) for n in re.findall(r"step:\d+ smpl:(\d+) ", log)]
    assert samples == [8, 16, 24]
    checkpoint = output_dir / "checkpoints" / "000003" / "pretrained_model"
    assert (checkpoint / "model.safetensors").is_file()

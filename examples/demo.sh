#!/usr/bin/env bash
# Set up (first run) and run the main job on the virtual SO-101, no hardware needed:
#   1. record a hands-free demo dataset through the real teleop path (scripted leader -> follower -> physics),
#      with two language tasks, crash-safe, followed by the dataset quality report;
#   2. fine-tune the flow_vla policy on it with stock `lerobot-train`.
# Sizes are small so it finishes in minutes on a laptop CPU; raise DEMO_EPISODES / DEMO_TRAIN_STEPS for a
# policy that actually solves the task.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/examples/setup_env.sh"
cd "$ROOT"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
OUT="${DEMO_OUT:-outputs/demo}"
EPISODES="${DEMO_EPISODES:-8}"
STEPS="${DEMO_TRAIN_STEPS:-300}"
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1/2 recording $EPISODES hands-free episodes on the virtual SO-101 -> $OUT/so101_virtual_demo"
.venv/bin/lerobot-vla record --virtual so101 --tasks red,blue --keyboard none \
  --dataset.repo_id local/so101_virtual_demo --dataset.root "$OUT/so101_virtual_demo" \
  --dataset.num_episodes "$EPISODES"

echo "== 2/2 fine-tuning flow_vla for $STEPS steps with stock lerobot-train -> $OUT/train"
.venv/bin/lerobot-train --config_path recipes/so101_virtual_demo_small_cpu.json \
  --dataset.root "$OUT/so101_virtual_demo" --output_dir "$OUT/train" \
  --steps "$STEPS" --save_freq "$STEPS" --log_freq 50 --num_workers 0

echo "Done: dataset $OUT/so101_virtual_demo (report: ${OUT}/so101_virtual_demo_report.png),"
echo "      checkpoint $OUT/train/checkpoints/last/pretrained_model (load with --policy.path)."

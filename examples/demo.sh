#!/usr/bin/env bash
# Set up (first run) and run the main job on the virtual SO-101, no hardware needed:
#   1. record a hands-free demo dataset through the real teleop path (scripted leader -> follower -> physics),
#      with two language tasks, crash-safe;
#   2. gate it with the dataset quality report (`lerobot-vla dataset-report --strict`): a blocking FAIL stops here;
#   3. fine-tune flow_vla on it with stock `lerobot-train`, starting from the virtual-arm checkpoint in
#      recipes/checkpoints/flow_vla_so101_virtual (trained on 240 episodes of other scenes; --from-scratch: the
#      CPU recipe instead, which at these sizes shows the workflow but does not succeed);
#   4. roll the checkpoint out on fresh scenes (evaluation seeds, never recorded) with asynchronous inference and
#      real-time chunking, each chunk charged its measured latency, and count successes per task;
#   5. one flywheel round: calibrate the policy's uncertainty threshold on held-out episodes, roll it out with
#      hand-off (the scripted operator takes the leader when the policy is unsure, or when 40 % of the episode
#      has passed without it finishing: a person would not wait longer), merge the demonstrations with
#      the corrected episodes, fine-tune from the checkpoint on the merge, and evaluate again on the same scenes;
#   6. write the report folder $DEMO_OUT/report (success per task and round, loss curve, frames, stage times, the
#      commands).
#
# Re-running keeps finished work: recording resumes the dataset in $DEMO_OUT (also after a run that died
# mid-recording) up to DEMO_EPISODES episodes; training is skipped when a checkpoint for the same dataset and
# step count exists, continued from it when only DEMO_TRAIN_STEPS grew, and otherwise redone (the old training
# folder is kept next to it).
#
# Usage: ./examples/demo.sh [--ignore-quality] [--fresh] [--quick] [--from-scratch]
#   --ignore-quality  train even when the dataset report has a blocking FAIL
#   --from-scratch    train from recipes/so101_virtual_demo_small_cpu.json instead of fine-tuning the checkpoint
#   --fresh           start over: the previous run folder is renamed to $DEMO_OUT.<date-time>, not deleted
#   --quick           smoke-test sizes (2 episodes, 2 training steps, 2 two-second evaluation scenes); the
#                     policy cannot succeed at this size
# Environment: DEMO_OUT (default outputs/demo), DEMO_EPISODES (8), DEMO_TRAIN_STEPS (300), DEMO_EVAL_EPISODES (10),
# DEMO_EVAL_EPISODE_S (simulated seconds per evaluation try, 20), DEMO_FLYWHEEL_EPISODES (rollouts with hand-off, 4),
# DEMO_FLYWHEEL_STEPS (fine-tune steps on the merge, 100).
set -euo pipefail
IGNORE_QUALITY=0 FRESH=0 QUICK=0 FROM_SCRATCH=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --ignore-quality) IGNORE_QUALITY=1 ;;
    --fresh) FRESH=1 ;;
    --from-scratch) FROM_SCRATCH=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/examples/setup_env.sh"
cd "$ROOT"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
OUT="${DEMO_OUT:-outputs/demo}"
if ((QUICK)); then
  EPISODES="${DEMO_EPISODES:-2}" STEPS="${DEMO_TRAIN_STEPS:-2}" EVAL_EPISODES="${DEMO_EVAL_EPISODES:-2}"
  EVAL_EPISODE_S="${DEMO_EVAL_EPISODE_S:-2}" FLYWHEEL_EPISODES="${DEMO_FLYWHEEL_EPISODES:-1}"
  FLYWHEEL_STEPS="${DEMO_FLYWHEEL_STEPS:-2}" HELD_OUT_EPISODES=1 CALIBRATION_BATCHES=1
  # A 2-step policy's uncertainty means nothing: every chunk counts as uncertain, so the hand-off path runs.
  FLYWHEEL_THRESHOLD=(--policy.uncertainty_threshold=0)
else
  EPISODES="${DEMO_EPISODES:-8}" STEPS="${DEMO_TRAIN_STEPS:-300}" EVAL_EPISODES="${DEMO_EVAL_EPISODES:-10}"
  EVAL_EPISODE_S="${DEMO_EVAL_EPISODE_S:-20}" FLYWHEEL_EPISODES="${DEMO_FLYWHEEL_EPISODES:-4}"
  FLYWHEEL_STEPS="${DEMO_FLYWHEEL_STEPS:-100}" HELD_OUT_EPISODES=2 CALIBRATION_BATCHES=8
  FLYWHEEL_THRESHOLD=()
fi
for value in "$EPISODES" "$STEPS" "$EVAL_EPISODES" "$EVAL_EPISODE_S" "$FLYWHEEL_EPISODES" "$FLYWHEEL_STEPS"; do
  if ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: DEMO_EPISODES, DEMO_TRAIN_STEPS, DEMO_EVAL_EPISODES, DEMO_EVAL_EPISODE_S, DEMO_FLYWHEEL_EPISODES" \
         "and DEMO_FLYWHEEL_STEPS must be positive whole numbers (got '$value')" >&2
    exit 2
  fi
done
DATASET="$OUT/so101_virtual_demo"
TRAIN="$OUT/train"
CHECKPOINT="$TRAIN/checkpoints/last/pretrained_model"
TRAINED_STAMP="$OUT/trained_on.txt"  # "<dataset fingerprint> from=<start> steps=<n>" of the finished checkpoint
BASE_CHECKPOINT="recipes/checkpoints/flow_vla_so101_virtual"
if ((FROM_SCRATCH)); then
  START=scratch START_NOTE="from scratch (CPU recipe)"
  TRAIN_FROM=(--config_path recipes/so101_virtual_demo_small_cpu.json)
else
  # A lower peak learning rate than from scratch: 8 demonstrations should adjust the checkpoint, not overwrite it.
  START=base START_NOTE="from $BASE_CHECKPOINT"
  TRAIN_FROM=(--policy.path="$BASE_CHECKPOINT" --policy.optimizer_lr=3e-5 --dataset.repo_id local/so101_virtual_demo
              --batch_size 32)
fi
EVAL="$OUT/eval_round0"
EVALUATED_STAMP="$OUT/evaluated.txt"  # "<trained stamp> episodes=<n>" of the finished evaluation
HELD_OUT="$OUT/held_out"  # episodes never trained on (other scene seeds), for the uncertainty threshold
CALIBRATED_STAMP="$OUT/calibrated.txt"  # "<trained stamp>" whose checkpoint holds a calibrated threshold
ROLLOUT1="$OUT/round1_rollout"  # the rollout with hand-off, recorded
MERGED1="$OUT/round1_dataset"  # demonstrations + the corrected episodes
TRAIN1="$OUT/train_round1"
CHECKPOINT1="$TRAIN1/checkpoints/last/pretrained_model"
EVAL1="$OUT/eval_round1"
ROUND1_STAMP="$OUT/round1.txt"  # "<calibrated stamp> episodes=<n> steps=<n> eval=<n>x<s>" of a finished round

stage() {  # stage NAME NOTE COMMAND...: run it, log the exact command to commands.sh and its wall time
  local name="$1" note="$2" start=$SECONDS
  shift 2
  printf '%q ' "$@" >> "$OUT/commands.sh"
  echo >> "$OUT/commands.sh"
  local status=0
  "$@" || status=$?
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - start))" "$note$( ((status)) && echo " (exit $status)")" \
    >> "$OUT/stage_times.tsv"
  return "$status"
}

keep_aside() {  # rename a folder to <folder>.<date-time> instead of deleting it; prints the new name
  local kept
  kept="$1.$(date +%Y%m%d-%H%M%S)"
  mv "$1" "$kept"
  echo "$kept"
}

dataset_info() {  # dataset_info FIELD [ROOT]: a field of meta/info.json (the recorder's commit record) of ROOT
  local root="${2:-$DATASET}"  # (default the demonstrations), 0 when there is none
  if [[ -f "$root/meta/info.json" ]]; then
    .venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
      "$root/meta/info.json" "$1"
  else
    echo 0
  fi
}

if ((FRESH)) && [[ -e "$OUT" ]]; then
  echo "== --fresh: previous run kept in $(keep_aside "$OUT")"
fi
mkdir -p "$OUT"
if [[ -d "$DATASET" && ! -f "$DATASET/meta/info.json" ]]; then
  echo "== $DATASET holds no dataset (a run stopped while creating it); kept in $(keep_aside "$DATASET")"
fi

have="$(dataset_info total_episodes)"
if ((have >= EPISODES)); then
  echo "== 1/6 $DATASET already holds $have episodes (DEMO_EPISODES=$EPISODES): recording skipped"
else
  resume=()
  if [[ -d "$DATASET" ]]; then
    resume=(--resume)
    echo "== 1/6 resuming $DATASET: $have episodes recorded, $((EPISODES - have)) to go"
  else
    echo "== 1/6 recording $EPISODES hands-free episodes on the virtual SO-101 -> $DATASET"
  fi
  # --resume records --dataset.num_episodes more; the episode index (not this session) picks task and scene.
  stage record "$((EPISODES - have)) episodes" \
    .venv/bin/lerobot-vla record --virtual so101 --tasks red,blue --keyboard none --report=false "${resume[@]}" \
    --dataset.repo_id local/so101_virtual_demo --dataset.root "$DATASET" \
    --dataset.num_episodes "$((EPISODES - have))" || {
    echo "error: recording stopped; the $(dataset_info total_episodes) finished episodes are kept in $DATASET." \
         "Run $0 again to continue." >&2
    exit 1
  }
fi

echo "== 2/6 dataset report (quality gate)"
report_status=0
stage dataset-report "" .venv/bin/lerobot-vla dataset-report "$DATASET" --repo-id local/so101_virtual_demo --min-tasks 2 \
  --strict --plot "${DATASET}_report.png" || report_status=$?
if ((report_status > 1)); then
  echo "error: the dataset report could not read $DATASET (above); not training." >&2
  exit 1
elif ((report_status == 1)); then
  if ((IGNORE_QUALITY)); then
    echo "warning: the dataset report has blocking failures (above); training anyway (--ignore-quality)." >&2
  else
    echo "error: the dataset in $DATASET failed the blocking check(s) named above; not training on it." >&2
    echo "       Inspect it (report plot: ${DATASET}_report.png), or train anyway: $0 --ignore-quality" >&2
    exit 1
  fi
fi

# The recorder only appends, so episode and frame counts identify the data.
want="episodes=$(dataset_info total_episodes) frames=$(dataset_info total_frames) from=$START"
done_before="$(cat "$TRAINED_STAMP" 2>/dev/null || true)"
if [[ -d "$CHECKPOINT" && "$done_before" == "$want steps=$STEPS" ]]; then
  echo "== 3/6 $CHECKPOINT is already trained on this dataset ($want) for $STEPS steps: training skipped"
elif [[ -d "$CHECKPOINT" && "$done_before" == "$want steps="* && "${done_before##*steps=}" -lt "$STEPS" ]]; then
  echo "== 3/6 continuing training on the same dataset from step ${done_before##*steps=} to $STEPS -> $TRAIN"
  # lerobot-train finds the checkpoint to resume only from the --config_path=... form.
  stage train "resumed to $STEPS steps" .venv/bin/lerobot-train --config_path="$CHECKPOINT/train_config.json" \
    --resume=true --steps="$STEPS" --save_freq="$STEPS" 2>&1 | tee -a "$OUT/train.log"
  echo "$want steps=$STEPS" > "$TRAINED_STAMP"
else
  if [[ -e "$TRAIN" ]]; then
    echo "== the training in $TRAIN is for other data or steps, or unfinished; kept in $(keep_aside "$TRAIN")"
  fi
  rm -f "$TRAINED_STAMP"
  echo "== 3/6 fine-tuning flow_vla $START_NOTE for $STEPS steps with stock lerobot-train -> $TRAIN"
  rm -f "$OUT/train.log"
  stage train "$STEPS steps $START_NOTE" .venv/bin/lerobot-train "${TRAIN_FROM[@]}" \
    --dataset.root "$DATASET" --output_dir "$TRAIN" \
    --steps "$STEPS" --save_freq "$STEPS" --log_freq 50 --num_workers 0 2>&1 | tee -a "$OUT/train.log"
  echo "$want steps=$STEPS" > "$TRAINED_STAMP"
fi

evaluated="$(cat "$TRAINED_STAMP") episodes=$EVAL_EPISODES seconds=$EVAL_EPISODE_S"
if [[ -f "$EVAL/eval_episodes.json" && "$(cat "$EVALUATED_STAMP" 2>/dev/null || true)" == "$evaluated" ]]; then
  echo "== 4/6 $CHECKPOINT is already evaluated on $EVAL_EPISODES fresh scenes: evaluation skipped"
else
  [[ -e "$EVAL" ]] && echo "== the evaluation in $EVAL is for another checkpoint; kept in $(keep_aside "$EVAL")"
  rm -f "$EVALUATED_STAMP"
  echo "== 4/6 rolling $CHECKPOINT out on $EVAL_EPISODES fresh scenes (async inference + RTC, measured delay)"
  stage evaluate "$EVAL_EPISODES scenes, async + RTC" .venv/bin/lerobot-vla eval --policy.path="$CHECKPOINT" \
    --virtual so101 --eval.episodes "$EVAL_EPISODES" --eval.episode_time_s "$EVAL_EPISODE_S" \
    --eval.inference async --output_dir "$EVAL"
  echo "$evaluated" > "$EVALUATED_STAMP"
fi

round="$(cat "$TRAINED_STAMP") episodes=$FLYWHEEL_EPISODES steps=$FLYWHEEL_STEPS eval=${EVAL_EPISODES}x$EVAL_EPISODE_S"
if [[ "$(cat "$ROUND1_STAMP" 2>/dev/null || true)" == "$round" ]]; then
  echo "== 5/6 the flywheel round for this checkpoint is done: skipped"
else
  rm -f "$ROUND1_STAMP"
  for folder in "$ROLLOUT1" "$MERGED1" "$TRAIN1" "$EVAL1" "$OUT/round1_rollout_report"; do
    [[ -e "$folder" ]] && echo "== $folder is from an earlier round; kept in $(keep_aside "$folder")"
  done
  echo "== 5/6 flywheel round: calibrate uncertainty, roll out with hand-off, merge the corrections, fine-tune, evaluate"
  if [[ "$(cat "$CALIBRATED_STAMP" 2>/dev/null || true)" != "$(cat "$TRAINED_STAMP")" ]]; then
    if (( $(dataset_info total_episodes "$HELD_OUT") < HELD_OUT_EPISODES )); then
      [[ -e "$HELD_OUT" ]] && echo "== $HELD_OUT is incomplete; kept in $(keep_aside "$HELD_OUT")"
      # Seeds from 100000 on: scenes the demonstrations (seeds 0, 1, ...) never showed.
      stage record-held-out "$HELD_OUT_EPISODES episodes" .venv/bin/lerobot-vla record --virtual so101 \
        --tasks red,blue --seed 100000 --keyboard none --report=false --dataset.repo_id local/held_out \
        --dataset.root "$HELD_OUT" --dataset.num_episodes "$HELD_OUT_EPISODES"
    fi
    stage calibrate "held-out episodes" .venv/bin/lerobot-vla calibrate-uncertainty "$CHECKPOINT" "$HELD_OUT" \
      --max-batches "$CALIBRATION_BATCHES"
    cat "$TRAINED_STAMP" > "$CALIBRATED_STAMP"
  fi
  # Seeds 1000 on: other fresh scenes than the evaluations' (0, 1, ...), so the evaluation stays unseen.
  patience_s=$(( EVAL_EPISODE_S * 2 / 5 > 0 ? EVAL_EPISODE_S * 2 / 5 : 1 ))
  stage rollout-hand-off "$FLYWHEEL_EPISODES episodes" .venv/bin/lerobot-vla rollout --virtual so101 \
    --policy.path="$CHECKPOINT" "${FLYWHEEL_THRESHOLD[@]}" --rollout.hand_off true \
    --rollout.hand_off_after_s "$patience_s" --rollout.episodes "$FLYWHEEL_EPISODES" \
    --rollout.episode_time_s "$EVAL_EPISODE_S" --rollout.seed 1000 \
    --dataset.repo_id local/round1_rollout --dataset.root "$ROLLOUT1" --output_dir "$OUT/round1_rollout_report"
  merge_status=0
  stage merge "demos + corrections" .venv/bin/lerobot-vla flywheel-merge --demos "$DATASET" --rollouts "$ROLLOUT1" \
    --output "$MERGED1" || merge_status=$?
  if ((merge_status == 3)); then
    echo "== the policy never handed off in $FLYWHEEL_EPISODES rollouts: no corrections to learn from; round 1 ends here"
  elif ((merge_status)); then
    echo "error: merging $DATASET and $ROLLOUT1 failed (above)." >&2
    exit 1
  else
    # Fine-tunes the round-0 weights (--policy.path) on the merge; the round-0 checkpoint stays as it is.
    stage train-round1 "$FLYWHEEL_STEPS steps" .venv/bin/lerobot-train --policy.path="$CHECKPOINT" \
      --dataset.repo_id local/round1_dataset --dataset.root "$MERGED1" --output_dir "$TRAIN1" \
      --batch_size 32 --steps "$FLYWHEEL_STEPS" --save_freq "$FLYWHEEL_STEPS" --log_freq 50 --num_workers 0 \
      2>&1 | tee "$OUT/train_round1.log"
    stage evaluate-round1 "$EVAL_EPISODES scenes, async + RTC" .venv/bin/lerobot-vla eval \
      --policy.path="$CHECKPOINT1" --virtual so101 --eval.episodes "$EVAL_EPISODES" \
      --eval.episode_time_s "$EVAL_EPISODE_S" --eval.inference async --output_dir "$EVAL1"
  fi
  echo "$round" > "$ROUND1_STAMP"
fi

echo "== 6/6 report"
.venv/bin/lerobot-vla demo-report "$OUT"
echo "Done: dataset $DATASET (report: ${DATASET}_report.png),"
echo "      checkpoint $CHECKPOINT (load with --policy.path), success on fresh scenes in $OUT/report/README.md."

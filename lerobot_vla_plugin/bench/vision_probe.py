"""`lerobot-vla bench vision-probe`: does a policy's image encoder know where the objects are?

A linear probe (ridge regression, cross-validated by episode) from the keypoint coordinates of a `flow_vla`
checkpoint to the table positions of the red cube, the blue cube, the bowl, the cube the instruction names and the
other one. The frames come from a dataset recorded on the virtual SO-101, whose episodes carry their scene seed, so
the layout of each is known exactly; they are taken in each episode's first seconds, before anything has moved.
Each error is printed beside the error of guessing the mean layout: a ratio near 1 means the encoder does not see
that object, and no amount of action training on top of it will place the gripper there.

A checkpoint trained with the object-position target (`object_position_loss_weight > 0`) is also scored on its own
readout, frame by frame through the episode. Run it on episodes the policy never trained on (e.g. a `multiply`
output's generated ones): an error that is large at frame 0 and small later means the readout follows the arm,
not the cameras (see `object_readout_source`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

OBJECTS = ("red cube", "blue cube", "bowl", "instructed cube", "other cube")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy.path", dest="policy_path", required=True, help="a flow_vla checkpoint with keypoints")
    parser.add_argument("--dataset-root", required=True, help="a dataset recorded with lerobot-vla record --virtual so101")
    parser.add_argument("--repo-id", default=None, help="repo id to open it with (default: local/<folder name>)")
    parser.add_argument("--frames", default="0,15,30,45", help="frame indices probed in every episode (default "
                        "0,15,30,45: the first 1.5 s at 30 fps, before the arm reaches anything)")
    parser.add_argument("--readout-frames", default="0,15,30,60,90,150",
                        help="frames at which a checkpoint's own object readout is scored (default %(default)s)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds, split by episode (default 5)")
    parser.add_argument("--ridge", type=float, default=1.0, help="ridge penalty on standardised features (default 1)")
    parser.add_argument("--output-dir", default="outputs/bench/vision_probe", help="where vision_probe.json goes")


def cross_validated_error(features: np.ndarray, targets: np.ndarray, groups: np.ndarray, folds: int,
                          ridge: float) -> np.ndarray:
    """Mean Euclidean error per object of a ridge regression features -> targets (N, objects * 2), each fold's
    episodes (`groups`) held out of its fit. Features are standardised on the training part of each fold."""
    errors = []
    for fold in range(folds):
        test = groups % folds == fold
        if not test.any() or test.all():
            continue
        train_x, train_y = features[~test], targets[~test]
        mean, scale = train_x.mean(0), train_x.std(0) + 1e-6
        design = np.c_[(train_x - mean) / scale, np.ones(len(train_x))]
        weights = np.linalg.solve(design.T @ design + ridge * np.eye(design.shape[1]), design.T @ train_y)
        predicted = np.c_[(features[test] - mean) / scale, np.ones(int(test.sum()))] @ weights
        errors.append(np.linalg.norm((predicted - targets[test]).reshape(-1, targets.shape[1] // 2, 2), axis=-1))
    if not errors:
        raise ValueError(f"{folds} folds need at least 2 episodes")
    return np.concatenate(errors).mean(0)


def mean_layout_error(targets: np.ndarray) -> np.ndarray:
    return np.linalg.norm((targets - targets.mean(0)).reshape(-1, targets.shape[1] // 2, 2), axis=-1).mean(0)


def object_targets(dataset) -> dict[int, np.ndarray]:
    """{episode: (10,) table x, y in metres of OBJECTS} from each episode's scene seed."""
    from lerobot_vla_plugin.sim.so101 import SO101Sim

    episodes = dataset.meta.episodes
    if "scene_seed" not in episodes.column_names:
        raise ValueError(f"{dataset.root} has no per-episode scene_seed: record it with lerobot-vla record --virtual "
                         "so101, whose episodes carry the seed of their layout")
    sim = SO101Sim()
    targets = {}
    for row in range(len(episodes)):
        episode = int(episodes[row]["episode_index"])
        sim.reset(int(episodes[row]["scene_seed"]))
        places = sim.object_positions()
        task = str(episodes[row]["tasks"][0])
        instructed, other = ("red_cube", "blue_cube") if "red" in task else ("blue_cube", "red_cube")
        targets[episode] = np.concatenate([places[name][:2] for name in
                                           ("red_cube", "blue_cube", "bowl", instructed, other)])
    return targets


def preprocessed_frames(preprocessor, dataset, frames: list[int]):
    """(episode, frame, item, batch) for the listed frames of every episode, through the policy's preprocessor."""
    import torch

    hf = dataset.hf_dataset.with_format(None)
    episode_column, frame_column = np.asarray(hf["episode_index"]), np.asarray(hf["frame_index"])
    for episode in np.unique(episode_column):
        for frame in frames:
            match = np.flatnonzero((episode_column == episode) & (frame_column == frame))
            if match.size == 0:
                continue
            item = dataset[int(match[0])]
            batch = preprocessor({key: value[None] if isinstance(value, torch.Tensor) else [value]
                                  for key, value in item.items()})
            yield int(episode), frame, item, batch


def keypoint_features(policy, preprocessor, dataset, frames: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, keypoints * 2), episode of each row) for the listed frames of every episode."""
    import torch
    from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

    encoder = policy.model.prefix_encoder
    rows, groups = [], []
    for episode, _, _, batch in preprocessed_frames(preprocessor, dataset, frames):
        with torch.no_grad():
            coordinates = encoder.keypoint_coordinates(policy.model.prepare_images(batch),
                                                       batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK])
        rows.append(coordinates.flatten().numpy())
        groups.append(episode)
    return np.stack(rows), np.asarray(groups)


def readout_errors(policy, preprocessor, dataset, frames: list[int]) -> dict[int, np.ndarray]:
    """{frame: (episodes, 3) metres} error of the policy's own object readout (instructed cube, other cube, bowl)
    against the recorded positions at that frame. Late frames can look better than early ones for the wrong
    reason: a readout of the prefix may copy the arm's joint angles, which by then point at the cube."""
    import torch

    from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import OBJECT_POSITION_SCALE

    key = policy.config.object_positions_key
    errors: dict[int, list[np.ndarray]] = {}
    for _, frame, item, batch in preprocessed_frames(preprocessor, dataset, frames):
        with torch.no_grad():
            estimate = policy.model.encode_scene(batch, with_estimate=True)[3][0].numpy() / OBJECT_POSITION_SCALE
        truth = item[key].numpy().reshape(-1, 3)[-policy.config.object_position_count:, :2]
        errors.setdefault(frame, []).append(np.linalg.norm(estimate - truth, axis=1))
    return {frame: np.stack(rows) for frame, rows in errors.items()}


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
    from lerobot_vla_plugin.rollout.loaded_policy import use_inference_threads
    from lerobot_vla_plugin.workflow.draccus_options import register_config_types

    register_config_types()
    use_inference_threads()
    config = PreTrainedConfig.from_pretrained(args.policy_path)
    if config.type != "flow_vla" or not getattr(config, "image_keypoints", 0):
        print(f"error: {args.policy_path} is a {config.type} policy without image keypoints; the probe reads "
              "flow_vla's keypoints (--policy.image_keypoints > 0 when training)")
        return 2
    policy = FlowVLAPolicy.from_pretrained(args.policy_path)
    policy.eval()
    preprocessor, _ = make_pre_post_processors(config, pretrained_path=args.policy_path)
    root = Path(args.dataset_root)
    dataset = LeRobotDataset(args.repo_id or f"local/{root.name}", root=root)
    try:
        layouts = object_targets(dataset)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    frames = [int(part) for part in args.frames.split(",") if part.strip()]
    features, groups = keypoint_features(policy, preprocessor, dataset, frames)
    targets = np.stack([layouts[episode] for episode in groups])
    probe = cross_validated_error(features, targets, groups, args.folds, args.ridge)
    guess = mean_layout_error(targets)

    print(f"Linear probe of {features.shape[1] // 2} keypoints -> object positions on the table, {len(groups)} frames "
          f"of {len(set(groups.tolist()))} episodes, {args.folds}-fold by episode (cm)")
    print(f"{'object':<18}{'probe':>8}{'mean guess':>12}{'ratio':>8}")
    for name, error, baseline in zip(OBJECTS, probe, guess, strict=True):
        print(f"{name:<18}{100 * error:>8.2f}{100 * baseline:>12.2f}{error / baseline:>8.2f}")
    readout = {}
    if policy.model.object_readout is not None and config.object_positions_key in dataset.meta.features:
        readout_frames = [int(part) for part in args.readout_frames.split(",") if part.strip()]
        print(f"\nThe policy's own object readout ({config.object_readout_source}), median error by frame of the "
              f"episode (cm); 'mean guess' is the probe's, at the episode's start")
        print(f"{'frame':<8}{'instructed':>12}{'other cube':>12}{'bowl':>8}")
        for frame, errors in sorted(readout_errors(policy, preprocessor, dataset, readout_frames).items()):
            medians = np.median(errors, axis=0)
            readout[frame] = medians.tolist()
            print(f"{frame:<8}" + "".join(f"{100 * m:>{w}.2f}" for m, w in zip(medians, (12, 12, 8), strict=True)))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vision_probe.json").write_text(json.dumps({
        "policy_path": str(args.policy_path), "dataset_root": str(root), "frames": frames, "folds": args.folds,
        "ridge": args.ridge, "probe_error_m": dict(zip(OBJECTS, probe.tolist(), strict=True)),
        "mean_guess_error_m": dict(zip(OBJECTS, guess.tolist(), strict=True)),
        "readout_median_error_m_by_frame": readout}, indent=2) + "\n")
    return 0

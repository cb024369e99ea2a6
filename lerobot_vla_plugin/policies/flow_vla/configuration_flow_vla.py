"""Configuration of `flow_vla`, a flow-matching vision-language-action policy.

This module is imported on every `lerobot-*` start-up (through the registration package), so it must stay
light: dataclasses and LeRobot config types only, never the torch model code in `modeling_flow_vla`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import NormalizationMode
from lerobot.optim.optimizers import AdamWConfig
from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig
from lerobot.policies.rtc.configuration_rtc import RTCConfig
from lerobot.utils.constants import OBS_IMAGES

KEYPOSE_ARMS = ("so101",)  # arms whose kinematics object_keyposes knows

SMALL_BACKBONE = "small"
PRETRAINED_BACKBONE = "pretrained"
BYTE_TOKENIZER = "bytes"


@PreTrainedConfig.register_subclass("flow_vla")
@dataclass
class FlowVLAConfig(PreTrainedConfig):
    """Everything needed to rebuild a `FlowVLAPolicy`; saved as `config.json` with each checkpoint.

    Defaults are the *small* model: it needs no download and trains on a laptop CPU. Set
    `backbone="pretrained"` and `pretrained_backbone=<Hub id or local dir>` to use a SmolVLM-style
    vision-language model instead (see recipes/).
    """

    # Input / output structure.
    n_obs_steps: int = 1
    chunk_size: int = 50  # actions predicted per inference
    n_action_steps: int = 50  # actions of each chunk executed before the next inference

    normalization_mapping: dict[str, NormalizationMode] = field(  # normalization per kind: VISUAL, STATE, ACTION
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )

    # State and action vectors are zero-padded to these sizes so one checkpoint can serve several arms;
    # the padded action dimensions are excluded from the loss.
    max_state_dim: int = 32
    max_action_dim: int = 32  # action vectors are zero-padded to this size
    max_cameras: int = 3  # most camera images the model reads per observation

    # Every camera image is resized to (height, width) inside the model, so cost does not depend on the
    # camera resolution.
    image_size: tuple[int, int] = (96, 128)
    # Random shifts of up to `augmentation_shift_px` pixels and brightness/contrast jitter while training.
    image_augmentation: bool = False
    augmentation_shift_px: int = 4  # largest random image shift in pixels
    augmentation_color_jitter: float = 0.1  # strength of the brightness/contrast jitter

    # Backbone: "small" (trained from scratch) or "pretrained" (transformers vision-language model).
    backbone: str = SMALL_BACKBONE
    # Small backbone sizes.
    dim_model: int = 192
    n_heads: int = 6  # attention heads of the small backbone
    n_prefix_layers: int = 3  # transformer layers of the small backbone
    image_encoder_channels: tuple[int, ...] = (32, 64, 128)  # conv channels per stage of the small image encoder
    # Spatial-softmax keypoints per camera (0 = none): K learned detectors on the stride-4 feature map, each
    # reduced to the expected (x, y) of its activation and given to the prefix as one token. A 2.5 cm cube is a
    # few pixels wide; the coarse token grid (one token per 16x16 pixels) blurs where it is, a keypoint reads it
    # to a fraction of a pixel.
    image_keypoints: int = 0
    # The instruction modulates the image encoder's feature maps (FiLM: a per-channel scale and shift from the
    # pooled instruction, Perez et al. 2018, as in RT-1), so the keypoint detectors can look for the object the
    # instruction names instead of every object; without it "red" versus "blue" is only read after pooling.
    # Initialised to the identity, so a checkpoint trained without it loads and starts where it was.
    language_film: bool = False
    dim_feedforward_multiplier: int = 4  # feed-forward width as a multiple of the model width
    dropout: float = 0.0  # dropout rate while training
    # Text: "bytes" (UTF-8 bytes, ships with the package) or, with the pretrained backbone, its own tokenizer.
    tokenizer_name: str = BYTE_TOKENIZER
    tokenizer_max_length: int = 48  # task text is cut to this many tokens

    # Pretrained backbone (SmolVLM-style: vision tower + connector + text decoder).
    pretrained_backbone: str | None = None
    load_backbone_weights: bool = True  # load the pretrained weights (false: same architecture, random init)
    num_backbone_layers: int = 8  # text decoder layers of the pretrained backbone kept
    freeze_vision_encoder: bool = True  # keep the pretrained vision tower fixed while training
    train_backbone_text_layers: bool = True  # fine-tune the pretrained text decoder layers

    # Action expert: a smaller transformer whose cross-attention reads the prefix keys/values.
    expert_dim: int = 128
    expert_heads: int = 4  # attention heads of the action expert
    n_expert_layers: int = 3  # transformer layers of the action expert
    # How the expert tells the chunk's steps apart: "sinusoidal" (a fixed sine-cosine code of the step index plus
    # a learned one) or "learned" (a learned code alone, initialised small). Measured on the virtual SO-101 after
    # 800 steps on one demonstration: with the learned code alone the predicted chunks were nearly flat, the first
    # action 10-30 units ahead of the recorded one.
    chunk_step_encoding: str = "sinusoidal"

    # Far-future auxiliary (training only): the prefix also predicts the actions these many steps ahead, beyond
    # the chunk (e.g. 60..150: 2-5 s, where the arm will reach, grasp and release), through a small readout,
    # weighted by future_action_loss_weight. Behaviour cloning alone teaches the image encoder little about where
    # a small object is: on the virtual SO-101 a linear probe of a 5 500-step policy's keypoints located the bowl
    # to 0.6 cm but the cubes to 9 cm (11 cm by guessing the mean), while the same encoder supervised with the
    # positions learns them to 0.5 cm. An action seconds ahead is mostly that position, and every demonstration
    # has it. () turns it off.
    future_action_offsets: tuple[int, ...] = ()
    future_action_loss_weight: float = 1.0  # weight of the far-future auxiliary loss beside the flow loss

    # Object-position auxiliary (training only): where a dataset has a per-frame object-position feature (the
    # virtual SO-101 records `observation.sim_object_positions`: the instructed cube, the other cube and the bowl,
    # x/y/z each), a readout of the prefix predicts each object's table x/y (in decimetres, not normalised: an
    # object that never moves has no spread to divide by), weighted by object_position_loss_weight (0 = off). The
    # positions are a target only, never an input: the policy still acts from its cameras, so it runs on an arm
    # without such a sensor, and a fine-tune on data without the feature trains without the auxiliary.
    object_position_loss_weight: float = 0.0
    object_positions_key: str = "observation.sim_object_positions"  # dataset feature with the positions
    object_position_count: int = 3  # objects in that feature, three coordinates each
    # The readout's own estimates (never the recorded positions) also become prefix tokens, one per object, that the
    # action expert attends to: the expert then maps a few numbers to a reach instead of re-finding a 4-pixel cube
    # in image features. Detached, so the action loss cannot bend them away from where the objects are. Needs
    # object_position_loss_weight > 0; the policy still acts from its cameras alone.
    object_position_tokens: bool = False
    # What those tokens carry in training: a negative value, the readout's estimate (as at run time); a value >= 0,
    # the recorded positions plus Gaussian noise of this many metres per axis (about the readout's error). On the
    # estimate, which is poor early in training, the expert learns to ignore the tokens and to pick a remembered
    # reach from the rest pose, where every demonstration starts alike; on the recorded positions it learns to
    # follow them. At run time the tokens always carry the estimate: the policy acts from its cameras alone.
    object_tokens_recorded_noise_m: float = -1.0
    # Which recorded positions: "frame", the objects where they are in that frame; "episode_start", where they
    # were at the episode's first frame (object_start_positions_key; the virtual SO-101 records both), which is
    # what object_tokens_at_run_time="first" hands the tokens at run time. Measured on the virtual SO-101: a
    # policy trained on "frame" and run with "first" carried the cube over the bowl, then turned back to where
    # its token still said the cube was and let it fall (0 of 20 fresh scenes, 6 "dropped"; the same policy fed
    # the scene's true positions live, as in its training: 7 of 20).
    object_tokens_recorded_from: str = "frame"
    object_start_positions_key: str = "observation.sim_object_start_positions"  # dataset feature for "episode_start"
    # The object readout's learning rate as a multiple of optimizer_lr. The appearance readout's colour detectors
    # start from nothing and must sharpen onto a cube a hundredth of the image in size: trained alone on the
    # virtual SO-101's frames (120 demonstrations, 1 500 steps x 32), its first-frame error on 20 fresh scenes was
    # 28 / 27 / 73 mm (instructed cube / other cube / bowl) at 3e-4 and 5 / 5 / 29 mm at 3e-3.
    object_readout_lr_scale: float = 1.0
    # The same objects by name in a fixed order (the virtual SO-101: red cube, blue cube, bowl), for "appearance"
    object_named_positions_key: str = "observation.sim_object_positions_by_name"
    # The readout learns only from objects resting where they started: one lifted more than this (metres) above its
    # height at the episode start is left out of its loss (with the start positions in the dataset; negative: every
    # frame counts). From a camera a lifted cube looks like a resting one further away, so it would teach the
    # readout two answers for one picture, and the instructed cube is lifted in over half of each demonstration.
    # Measured on the virtual SO-101 with every frame counted: on 20 fresh scenes' first frames the instructed cube
    # was read 10.8 mm off (median), the other cube 3.2 mm and the bowl 1.4 mm; 1 200 steps with lifted objects left
    # out did not change that (11.1 mm). The rule stays because those frames are wrong supervision, not for a gain.
    object_readout_max_lift_m: float = 0.005
    # What the tokens carry at run time: "live" re-estimates the objects from every observation a chunk is
    # computed from; "first" keeps the estimate from the episode's first chunk (arm at rest, nothing hidden) until
    # the policy is reset. Measured in closed loop on the virtual SO-101, the live estimate of the instructed cube
    # drifts 9-11 cm after the arm as it moves, while from the first frame it is off by 0.6-1.5 cm; the cubes do
    # not move before the grasp and the bowl never does.
    object_tokens_at_run_time: str = "live"
    # The positions the object tokens carry also go straight into every expert layer's conditioning (beside the
    # flow time), not only as three of the prefix tokens it attends to. Measured on the virtual SO-101: trained
    # with tokens alone, moving the instructed cube's token 10 cm moved the first chunk's target by 0.2 units,
    # i.e. the expert ignored it and reached for the average layout.
    object_position_conditioning: bool = False
    # For an arm whose kinematics the package knows ("so101": the virtual SO-101's model), the positions the object
    # tokens carry also become joint-space keyposes: the pan, shoulder, elbow and wrist-flex angles that hover the
    # gripper object_keypose_height_m above each object, pointing down. They join the expert's conditioning, and
    # each chunk step adds a learned share of each keypose to its arm joints (see keyposes.py), so the reach can
    # land on the cube's angles exactly instead of near the average layout's. The action statistics they need are
    # stored in the checkpoint. Empty: off. Measured on the virtual SO-101 (120 demonstrations; the best weights
    # without keyposes, 1 500 steps more with them; 50 fresh scenes, synchronous, the same draws): 17/50 against
    # 6/50 for those weights and 6/50 for the same 1 500 steps without keyposes (of the 50 scenes, 14 succeeded
    # only with keyposes, 3 only without).
    object_keyposes: str = ""
    # How high over each object (metres above the table) the keyposes hover the gripper: about where the virtual
    # SO-101's demonstrations pause above a cube before descending, and carry it over the bowl.
    object_keypose_height_m: float = 0.06
    # Also the keyposes that put the gripper this high over each object (metres above the table): where the jaws
    # close on a cube (the virtual SO-101's demonstrations close them 1.5-1.8 cm up, on a 2.5 cm cube). Measured
    # on the virtual SO-101 with hover keyposes alone: the jaws first closed a median 1.4 cm above the cube's
    # centre, against 0.2-0.5 cm in the demonstrations. With it (from scratch, 4 500 steps x 32, 50 fresh scenes):
    # 9/50, as without it, the jaws 1.1 cm up and as far beside the cube; so 0 (hover keyposes only) by default.
    object_grasp_keypose_height_m: float = 0.0
    # What the readout reads: "prefix" (the fused camera, language and state tokens, by cross-attention) or
    # "keypoints" (where the image keypoint detectors look, plus the pooled instruction, by an MLP). Measured on
    # the virtual SO-101 (120 demonstrations, vision only, 30 unseen layouts, arm at rest): a readout attending
    # over the camera tokens reaches 2 cm on training scenes but stays at chance (9-11 cm) on new ones, it
    # memorises scenes; the keypoint readout reaches 0.6-0.8 cm on new ones. In a demonstration the arm's joint
    # angles also point at the cube it heads for, which a prefix readout can copy instead of looking.
    # "appearance": each object is found by its colour alone and the instruction only orders the objects (see
    # AppearanceObjectReadout). Keypoints that see the whole scene learn from the demonstrations to follow where
    # the arm heads, which names the instructed cube in most frames but not in the first, the one the object
    # tokens hold: with the keypoint readout the same cube was read 11.0 mm off as the instructed cube and 3.4 mm
    # off as the other one under the other task's instruction (virtual SO-101, 20 fresh first frames).
    object_readout_source: str = "prefix"
    # The cameras whose keypoints that readout reads, by name ("front" for observation.images.front); empty reads
    # every camera; the appearance readout reads the first one named (or the policy's first camera). A wrist
    # camera moves with the arm: from its keypoints the readout can place the cube the gripper is heading for
    # without finding it, which fails at the start of an episode, when it matters.
    object_readout_cameras: tuple[str, ...] = ()

    # Flow matching (t = 1 is noise, t = 0 is data, as in pi0/SmolVLA).
    time_sampling_beta_alpha: float = 1.5
    time_sampling_beta_beta: float = 1.0  # beta parameter of the Beta distribution of training times
    time_sampling_scale: float = 0.999  # training times are scale * Beta sample + offset
    time_sampling_offset: float = 0.001  # training times are scale * Beta sample + offset
    min_period: float = 4e-3  # shortest period of the sinusoidal time embedding
    max_period: float = 4.0  # longest period of the sinusoidal time embedding
    # Euler steps from noise to an action chunk. The shipped virtual-arm checkpoint, 50 fresh scenes, synchronous:
    # 2 steps 13/50, 4 steps 24/50, 10 steps 23/50 (the jaws closed 22, 16, 14 mm from the cube). Close chunk
    # errors at 1-2 steps (the shortcut objective) did not mean close success; 4 costs ~20 ms more a chunk here.
    num_inference_steps: int = 4
    # Chunks drawn from this many independent noises and averaged, action by action, into the one the arm runs.
    # One draw is a sample of the policy's distribution; where it is unimodal (one way to reach a cube) the
    # average is its mean, without the sampling spread. Drawn in one batch: the prefix is encoded once. Measured on
    # the virtual SO-101 (best policy, 50 fresh scenes): 8 draws 8/50, one draw 6/50 on the same scenes; the reach
    # misses the cube by a bias the average keeps (grasp aim 31 mm against 34-40), so 1 stays the default.
    inference_draws: int = 1
    # "clean_action": the expert outputs an estimate â of the clean chunk and the velocity is
    # (x_t − â) / t; the loss is then the velocity error weighted by t², i.e. ‖â − actions‖². A small network
    # does not have to copy the noise through every layer to cancel it, so one step is already sharp and
    # sample spread reflects real ambiguity. "velocity": the expert outputs the velocity (pi0/SmolVLA).
    parametrization: str = "clean_action"
    # Shortcut self-consistency: this fraction of each batch learns to jump 1/max_shortcut_steps ... 1 at
    # once, so 1, 2 and 4 Euler steps stay close to the 10-step chunk.
    shortcut_fraction: float = 0.25
    max_shortcut_steps: int = 8  # finest shortcut step is 1/max_shortcut_steps
    # The clean chunk is a learned linear map of the current state (identity at initialisation: "hold the
    # pose") plus the expert's output, so the expert learns the motion relative to where the arm is.
    # Needs parametrization="clean_action" and observation.state.
    state_residual: bool = False
    # State dropout (training only): this share of each batch sees the dataset's mean state (zero once
    # normalised) in place of the arm's. In a demonstration the arm's own pose already says where it is heading,
    # so a policy that reads it can continue the motion and never learn to look at the object: the copycat problem
    # of behaviour cloning (Wen et al. 2020). Measured on the virtual SO-101: 1 000 steps at 0.5 from an
    # 8 500-step policy tripled how far its reach follows the cube's distance (+3.1 to +9.9 degrees of
    # shoulder_lift per 10 cm, where the arm's geometry needs +50). The state still reaches the expert's
    # state_residual offset, so "hold the pose" stays exact.
    state_dropout: float = 0.0

    # Outlier exposure: this fraction of each batch gets corrupted observations (camera noise/occlusion,
    # displaced state) paired with actions of other samples, so the flow learns to spread its samples when
    # the observation is unreliable instead of answering confidently.
    outlier_exposure_fraction: float = 0.1
    # Uncertainty: spread of `uncertainty_num_samples` chunks drawn from different noise in one batch.
    uncertainty_num_samples: int = 8
    uncertainty_num_steps: int = 10  # Euler steps per sample of the uncertainty estimate
    # Calibrated on held-out episodes (see uncertainty.calibrate_uncertainty_threshold); None until then.
    uncertainty_threshold: float | None = None

    # Real-time chunking (rtc.py), used when `predict_action_chunk` receives the unexecuted rest of the previous
    # chunk. Inference-time guidance: prefix weights are 1 on the first inference_delay actions and decay
    # ("linear", "exp"; also "ones", "zeros") to 0 at rtc_execution_horizon; the guidance weight is capped at
    # rtc_max_guidance_weight.
    rtc_execution_horizon: int = 10
    rtc_max_guidance_weight: float = 10.0  # cap on the real-time chunking guidance weight
    rtc_prefix_schedule: str = "linear"  # decay of the prefix weights: linear, exp, ones or zeros
    # "identity": the correction is the weighted error itself (the Jacobian of the denoised estimate taken as
    # the identity, no backward pass); "vjp": the exact vector-Jacobian product through the network (autograd).
    # On a tiny trained model identity followed the leftover far closer at 1-4 steps (the network's Jacobian is
    # near zero at the noise end, so the exact product barely guides a 1-step sample).
    rtc_guidance_jacobian: str = "identity"
    # Training-time prefix conditioning: > 0 trains with the first d ~ U[0, max] target actions given as clean,
    # flagged inputs (no loss there); at inference the leftover's first inference_delay actions are fed the same
    # way (delays above the maximum are clipped to it) instead of guidance. 0 keeps the plain training. Measured on
    # the virtual SO-101 (500 fine-tuning steps at 5 against 500 without, 30 scenes): jerk at chunk boundaries 5.47
    # against 1.73 with guidance, hence 0.
    rtc_training_max_delay: int = 0
    # Legacy: LeRobot's RTCConfig, as older checkpoints saved it; when set, its execution_horizon,
    # max_guidance_weight and prefix_attention_schedule replace the three rtc_* guidance fields above.
    rtc_config: RTCConfig | None = None

    # Training presets.
    optimizer_lr: float = 3e-4
    optimizer_betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    optimizer_eps: float = 1e-8  # AdamW epsilon
    optimizer_weight_decay: float = 1e-4  # AdamW weight decay
    optimizer_grad_clip_norm: float = 10.0  # gradients are clipped to this norm
    scheduler_warmup_steps: int = 500  # steps of linear learning-rate warmup
    scheduler_decay_steps: int = 30_000  # steps of cosine decay after the warmup
    scheduler_decay_lr: float = 1e-5  # learning rate at the end of the decay

    def __post_init__(self):
        super().__post_init__()
        if self.n_action_steps > self.chunk_size:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) cannot exceed chunk_size ({self.chunk_size}): the "
                "policy only predicts chunk_size actions per call. Lower --policy.n_action_steps."
            )
        if self.backbone not in (SMALL_BACKBONE, PRETRAINED_BACKBONE):
            raise ValueError(
                f"backbone must be '{SMALL_BACKBONE}' or '{PRETRAINED_BACKBONE}', got '{self.backbone}'."
            )
        if self.chunk_step_encoding not in ("sinusoidal", "learned"):
            raise ValueError(f"chunk_step_encoding must be 'sinusoidal' or 'learned', got '{self.chunk_step_encoding}'.")
        if self.parametrization not in ("clean_action", "velocity"):
            raise ValueError(f"parametrization must be 'clean_action' or 'velocity', got '{self.parametrization}'.")
        if not 0.0 <= self.state_dropout < 1.0:
            raise ValueError(f"state_dropout is the share of training samples that see the mean state: a value in "
                             f"[0, 1), got {self.state_dropout}.")
        if self.state_residual and self.parametrization != "clean_action":
            raise ValueError("state_residual offsets the predicted clean chunk; it needs parametrization='clean_action'.")
        if self.backbone == PRETRAINED_BACKBONE and not self.pretrained_backbone:
            raise ValueError(
                "backbone='pretrained' needs pretrained_backbone=<Hub id or local directory>, e.g. "
                "--policy.pretrained_backbone=HuggingFaceTB/SmolVLM2-500M-Video-Instruct."
            )
        if self.backbone == SMALL_BACKBONE and self.tokenizer_name != BYTE_TOKENIZER:
            raise ValueError(
                f"The small backbone embeds UTF-8 bytes; tokenizer_name must be '{BYTE_TOKENIZER}', got "
                f"'{self.tokenizer_name}'. Other tokenizers come with backbone='{PRETRAINED_BACKBONE}'."
            )
        if self.dim_model % self.n_heads or self.expert_dim % self.expert_heads:
            raise ValueError(
                f"dim_model ({self.dim_model}) must be divisible by n_heads ({self.n_heads}) and expert_dim "
                f"({self.expert_dim}) by expert_heads ({self.expert_heads})."
            )
        if any(offset < self.chunk_size for offset in self.future_action_offsets):
            raise ValueError(
                f"future_action_offsets {tuple(self.future_action_offsets)} must all be >= chunk_size "
                f"({self.chunk_size}): the chunk's own steps are already predicted."
            )
        if self.object_position_loss_weight < 0 or self.object_position_count < 1:
            raise ValueError(
                f"object_position_loss_weight must be >= 0 and object_position_count >= 1, got "
                f"{self.object_position_loss_weight} and {self.object_position_count}."
            )
        if self.object_readout_source not in ("prefix", "keypoints", "appearance"):
            raise ValueError("object_readout_source must be 'prefix', 'keypoints' or 'appearance', got "
                             f"'{self.object_readout_source}'.")
        if self.object_readout_lr_scale <= 0:
            raise ValueError(f"object_readout_lr_scale must be > 0, got {self.object_readout_lr_scale}.")
        if self.object_readout_source == "appearance" and self.backbone == "pretrained":
            raise ValueError("object_readout_source='appearance' orders its objects with the small backbone's "
                             "instruction embedding: use --policy.backbone=small, or "
                             "--policy.object_readout_source=prefix.")
        if self.object_readout_source == "keypoints" and (self.backbone == "pretrained" or self.image_keypoints < 1):
            raise ValueError("object_readout_source='keypoints' reads the small backbone's image keypoints: use "
                             "--policy.backbone=small with --policy.image_keypoints=32, or "
                             "--policy.object_readout_source=prefix.")
        if self.object_tokens_recorded_noise_m >= 0 and not self.object_position_tokens:
            raise ValueError("object_tokens_recorded_noise_m sets what the object tokens carry in training: add "
                             "--policy.object_position_tokens=true, or drop it.")
        if self.object_tokens_recorded_from not in ("frame", "episode_start"):
            raise ValueError("object_tokens_recorded_from must be 'frame' or 'episode_start', got "
                             f"'{self.object_tokens_recorded_from}'.")
        if self.object_tokens_recorded_from == "episode_start" and self.object_tokens_recorded_noise_m < 0:
            raise ValueError("object_tokens_recorded_from picks which recorded positions the object tokens carry in "
                             "training: set --policy.object_tokens_recorded_noise_m (e.g. 0.005), or drop it.")
        if self.object_tokens_at_run_time not in ("live", "first"):
            raise ValueError(
                f"object_tokens_at_run_time must be 'live' or 'first', got '{self.object_tokens_at_run_time}'.")
        if self.object_position_conditioning and not self.object_position_tokens:
            raise ValueError("object_position_conditioning feeds the object tokens' positions to the expert: add "
                             "--policy.object_position_tokens=true, or drop it.")
        if self.object_keyposes and not self.object_position_tokens:
            raise ValueError("object_keyposes turns the object tokens' positions into joint keyposes: add "
                             "--policy.object_position_tokens=true, or drop it.")
        if self.object_keyposes and self.normalization_mapping.get("ACTION") != NormalizationMode.MEAN_STD:
            raise ValueError("object_keyposes puts the keyposes in mean/std-normalised action units: keep "
                             "normalization_mapping ACTION at MEAN_STD, or drop object_keyposes.")
        if self.object_keyposes and self.object_keyposes not in KEYPOSE_ARMS:
            raise ValueError(f"object_keyposes knows the kinematics of {list(KEYPOSE_ARMS)}, not "
                             f"'{self.object_keyposes}'.")
        if self.object_grasp_keypose_height_m < 0 or (self.object_grasp_keypose_height_m and not self.object_keyposes):
            raise ValueError("object_grasp_keypose_height_m adds grasp keyposes to object_keyposes: set "
                             "--policy.object_keyposes=so101 and a height >= 0, or drop it.")
        if self.object_tokens_at_run_time == "first" and not self.object_position_tokens:
            raise ValueError("object_tokens_at_run_time sets what the object tokens carry at run time: add "
                             "--policy.object_position_tokens=true, or drop it.")
        if self.object_readout_cameras and self.object_readout_source not in ("keypoints", "appearance"):
            raise ValueError("object_readout_cameras chooses the cameras of the keypoint readout: add "
                             "--policy.object_readout_source=keypoints, or drop --policy.object_readout_cameras.")
        if self.object_position_tokens and self.object_position_loss_weight <= 0:
            raise ValueError(
                "object_position_tokens reads the object-position readout, which object_position_loss_weight=0 "
                "turns off: set --policy.object_position_loss_weight=1.0 (on a dataset with "
                f"'{self.object_positions_key}') or --policy.object_position_tokens=false."
            )
        if self.image_keypoints < 0:
            raise ValueError(f"image_keypoints must be >= 0, got {self.image_keypoints}.")
        if self.max_shortcut_steps < 1 or self.max_shortcut_steps & (self.max_shortcut_steps - 1):
            raise ValueError(f"max_shortcut_steps must be a power of two, got {self.max_shortcut_steps}.")
        if not 0.0 <= self.outlier_exposure_fraction < 0.5:
            raise ValueError(f"outlier_exposure_fraction must be in [0, 0.5), got {self.outlier_exposure_fraction}.")
        if not 0.0 <= self.shortcut_fraction < 1.0:
            raise ValueError(f"shortcut_fraction must be in [0, 1), got {self.shortcut_fraction}.")
        if self.rtc_prefix_schedule not in ("linear", "exp", "ones", "zeros"):
            raise ValueError(
                f"rtc_prefix_schedule must be 'linear', 'exp', 'ones' or 'zeros', got '{self.rtc_prefix_schedule}'."
            )
        if self.rtc_guidance_jacobian not in ("vjp", "identity"):
            raise ValueError(f"rtc_guidance_jacobian must be 'vjp' or 'identity', got '{self.rtc_guidance_jacobian}'.")
        if self.rtc_execution_horizon < 1 or self.rtc_max_guidance_weight < 0:
            raise ValueError(
                f"rtc_execution_horizon must be >= 1 and rtc_max_guidance_weight >= 0, got "
                f"{self.rtc_execution_horizon} and {self.rtc_max_guidance_weight}."
            )
        if not 0 <= self.rtc_training_max_delay < self.chunk_size:
            raise ValueError(
                f"rtc_training_max_delay must be in [0, chunk_size), got {self.rtc_training_max_delay} "
                f"(chunk_size {self.chunk_size})."
            )
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}.")
        if self.inference_draws < 1:
            raise ValueError(f"inference_draws must be >= 1, got {self.inference_draws}.")
        if self.uncertainty_num_samples < 2:
            raise ValueError(
                f"uncertainty_num_samples must be >= 2, got {self.uncertainty_num_samples}: the uncertainty score "
                "is the spread between sampled chunks, and one sample has none."
            )
        if self.uncertainty_threshold is not None and not math.isfinite(self.uncertainty_threshold):
            raise ValueError(f"uncertainty_threshold must be a finite number or None, got {self.uncertainty_threshold}.")

    @property
    def text_tokenizer_name(self) -> str:
        """The tokenizer the preprocessor loads: bytes for the small backbone, the backbone's own otherwise."""
        if self.backbone == PRETRAINED_BACKBONE and self.tokenizer_name == BYTE_TOKENIZER:
            return str(self.pretrained_backbone)
        return self.tokenizer_name

    def object_keypose_heights_m(self) -> tuple[float, ...]:
        """The heights object_keyposes puts the gripper at: the hover's, then the grasp's when set."""
        if self.object_grasp_keypose_height_m:
            return (self.object_keypose_height_m, self.object_grasp_keypose_height_m)
        return (self.object_keypose_height_m,)

    def object_readout_camera_indices(self) -> list[int]:
        """Positions in `image_features` of the cameras in object_readout_cameras (all when it is empty)."""
        keys = list(self.image_features)
        if not self.object_readout_cameras:
            return list(range(len(keys)))
        indices = []
        for name in self.object_readout_cameras:
            matches = [i for i, key in enumerate(keys) if key in (name, f"{OBS_IMAGES}.{name}")]
            if not matches:
                raise ValueError(
                    f"object_readout_cameras names '{name}', which is not a camera of this policy (cameras: "
                    f"{[key.removeprefix(OBS_IMAGES + '.') for key in keys]}): fix --policy.object_readout_cameras."
                )
            indices.extend(matches)
        return indices

    def validate_features(self) -> None:
        if self.action_feature is None:
            raise ValueError("flow_vla needs an 'action' output feature; the dataset has none.")
        action_dim = self.action_feature.shape[0]
        if action_dim > self.max_action_dim:
            raise ValueError(
                f"The action has {action_dim} dimensions but max_action_dim is {self.max_action_dim}. "
                f"Set --policy.max_action_dim={action_dim} (or larger)."
            )
        if self.robot_state_feature is not None and self.robot_state_feature.shape[0] > self.max_state_dim:
            raise ValueError(
                f"observation.state has {self.robot_state_feature.shape[0]} dimensions but max_state_dim is "
                f"{self.max_state_dim}. Set --policy.max_state_dim={self.robot_state_feature.shape[0]}."
            )
        if len(self.image_features) > self.max_cameras:
            raise ValueError(
                f"{len(self.image_features)} cameras ({list(self.image_features)}) but max_cameras is "
                f"{self.max_cameras}. Set --policy.max_cameras={len(self.image_features)}."
            )
        if (self.object_readout_source in ("keypoints", "appearance") and self.object_position_loss_weight > 0
                and not self.image_features):
            raise ValueError(f"object_readout_source='{self.object_readout_source}' reads a camera, but the dataset "
                             "has no camera: use --policy.object_readout_source=prefix.")
        self.object_readout_camera_indices()  # names every camera it cannot find
        positions = self.input_features.get(self.object_positions_key)
        if self.object_position_loss_weight > 0 and positions is not None and positions.shape[0] != 3 * self.object_position_count:
            raise ValueError(
                f"{self.object_positions_key} has {positions.shape[0]} numbers, not x/y/z of "
                f"object_position_count={self.object_position_count} objects. Set --policy.object_position_count="
                f"{positions.shape[0] // 3}."
            )
        if not self.image_features and self.robot_state_feature is None:
            raise ValueError("flow_vla needs at least one camera image or observation.state as input.")

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(
            lr=self.optimizer_lr,
            betas=self.optimizer_betas,
            eps=self.optimizer_eps,
            weight_decay=self.optimizer_weight_decay,
            grad_clip_norm=self.optimizer_grad_clip_norm,
        )

    def get_scheduler_preset(self) -> CosineDecayWithWarmupSchedulerConfig:
        return CosineDecayWithWarmupSchedulerConfig(
            peak_lr=self.optimizer_lr,
            decay_lr=self.scheduler_decay_lr,
            num_warmup_steps=self.scheduler_warmup_steps,
            num_decay_steps=self.scheduler_decay_steps,
        )

    @property
    def observation_delta_indices(self) -> list[int]:
        return [0]

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size)) + list(self.future_action_offsets)

    @property
    def reward_delta_indices(self) -> None:
        return None


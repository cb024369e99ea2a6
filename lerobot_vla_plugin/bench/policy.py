"""`lerobot-vla bench policy`: flow_vla's default next to LeRobot's ACT and a tiny SmolVLA, in one run.

Measures parameters, GFLOP per chunk (torch.utils.flop_counter), CPU latency per chunk (p50/p99) at 1/2/4/10
integration steps, training samples/s, and flow_vla's held-out action error at 1/2/4/10 steps after a short
training on a synthetic reaching task. torch and lerobot are imported inside `run` only, so listing the
benchmarks stays fast.
"""

from __future__ import annotations

import argparse

STEP_COUNTS = (1, 2, 4, 10)
STATE_DIM = 6
ACTION_DIM = 6
IMAGE_KEY = "observation.images.front"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="few repeats and a short training: a smoke run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--image-size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=30, help="latency samples per step count")
    parser.add_argument("--train-steps", type=int, default=600, help="steps for the held-out error study")
    parser.add_argument("--skip-smolvla", action="store_true")
    parser.add_argument("--skip-act", action="store_true")
    parser.add_argument("--skip-error-study", action="store_true", help="only the speed table")


def run(args: argparse.Namespace) -> int:
    import os
    import tempfile
    import time

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats = min(args.repeats, 5)
        args.train_steps = min(args.train_steps, 60)

    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_pre_post_processors

    import lerobot_robot_vla_plugin  # noqa: F401  (registers flow_vla)

    height, width = args.image_size
    chunk = args.chunk_size
    input_features = {
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
        IMAGE_KEY: PolicyFeature(type=FeatureType.VISUAL, shape=(3, height, width)),
    }
    output_features = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))}

    def observation_batch(config, batch_size: int, with_actions: bool):
        generator = torch.Generator().manual_seed(0)
        raw = {
            "observation.state": torch.randn(batch_size, STATE_DIM, generator=generator),
            IMAGE_KEY: torch.rand(batch_size, 3, height, width, generator=generator),
            "task": ["pick up the red cube"] * batch_size,
        }
        if with_actions:
            raw["action"] = torch.randn(batch_size, chunk, ACTION_DIM, generator=generator)
            raw["action_is_pad"] = torch.zeros(batch_size, chunk, dtype=torch.bool)
        preprocessor, _ = make_pre_post_processors(config, dataset_stats=None)
        return preprocessor(raw)

    models = {}
    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import (
        FlowVLAConfig,
    )
    from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy

    flow_config = FlowVLAConfig(
        device="cpu", input_features=dict(input_features), output_features=dict(output_features),
        chunk_size=chunk, n_action_steps=chunk, image_size=(height, width),
    )
    models["flow_vla (default)"] = (FlowVLAPolicy(flow_config), flow_config, "flow")

    if not args.skip_act:
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy

        act_config = ACTConfig(
            device="cpu", input_features=dict(input_features), output_features=dict(output_features),
            chunk_size=chunk, n_action_steps=chunk, pretrained_backbone_weights=None,
        )
        models["ACT (resnet18, no pretrain)"] = (ACTPolicy(act_config), act_config, "act")

    workdir = tempfile.TemporaryDirectory()
    if not args.skip_smolvla:
        from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
        from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

        vlm_dir = write_tiny_smolvlm(os.path.join(workdir.name, "tiny_smolvlm"))
        smol_config = SmolVLAConfig(
            device="cpu", input_features=dict(input_features), output_features=dict(output_features),
            chunk_size=chunk, n_action_steps=chunk, vlm_model_name=vlm_dir, load_vlm_weights=False,
            resize_imgs_with_padding=(64, 64), num_vlm_layers=4,
        )
        models["SmolVLA (tiny local VLM)"] = (SmolVLAPolicy(smol_config), smol_config, "smolvla")

    from torch.utils.flop_counter import FlopCounterMode

    def predict(policy, kind, batch, steps):
        if kind == "flow":
            return policy.predict_action_chunk(batch, num_steps=steps)
        if kind == "smolvla":
            policy.config.num_steps = steps
        return policy.predict_action_chunk(batch)

    # FLOPs, then latency measured round-robin over every (model, step count) pair, so that load from
    # other processes on a shared machine hits all models alike.
    results, batches, cases = {}, {}, []
    default_steps = flow_config.num_inference_steps
    with torch.no_grad():
        for name, (policy, config, kind) in models.items():
            policy.eval()
            batches[name] = observation_batch(config, 1, with_actions=False)
            row = {"params_m": sum(p.numel() for p in policy.parameters()) / 1e6}
            for steps in STEP_COUNTS if kind != "act" else (1,):
                counter = FlopCounterMode(display=False)
                with counter:
                    predict(policy, kind, batches[name], steps)
                row[f"gflop_{steps}"] = counter.get_total_flops() / 1e9
                for _ in range(2):
                    predict(policy, kind, batches[name], steps)  # warm-up
                cases.append((name, steps))
            results[name] = row
        timings = {case: [] for case in cases}
        for _ in range(args.repeats):
            for name, steps in cases:
                policy, _, kind = models[name]
                start = time.perf_counter()
                predict(policy, kind, batches[name], steps)
                timings[(name, steps)].append((time.perf_counter() - start) * 1000)
    for (name, steps), values in timings.items():
        results[name][f"p50_{steps}"] = percentile(values, 50)
        results[name][f"p99_{steps}"] = percentile(values, 99)
    for name, (policy, config, kind) in models.items():
        row = results[name]
        if kind == "act":  # one forward pass, whatever the step count
            for steps in STEP_COUNTS[1:]:
                for key in ("gflop", "p50", "p99"):
                    row[f"{key}_{steps}"] = row[f"{key}_1"]
        row["gflop_default"] = row[f"gflop_{default_steps}"]
        row["samples_per_s"] = training_throughput(policy, observation_batch(config, 8, with_actions=True),
                                                   iterations=3 if args.quick else 10)
        print(f"measured {name}", flush=True)

    print_table(results, default_steps=flow_config.num_inference_steps, threads=args.threads)
    if args.skip_error_study:
        workdir.cleanup()
        return 0
    errors = held_out_error_study(args, flow_config, observation_batch)
    print("\nflow_vla held-out action error (MSE, normalised units, synthetic reaching task, "
          f"{args.train_steps} training steps):")
    for steps in STEP_COUNTS:
        print(f"  {steps:>2} steps: {errors[steps]:.4f}   ({errors[steps] / errors[10]:.3f} × the 10-step error)")
    workdir.cleanup()
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def training_throughput(policy, batch, iterations: int) -> float:
    import time

    import torch

    policy.train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss, _ = policy.forward(dict(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    elapsed = time.perf_counter() - start
    policy.eval()
    return iterations * batch["observation.state"].shape[0] / elapsed


def print_table(results: dict, default_steps: int, threads: int) -> None:
    import os

    reference = results["flow_vla (default)"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nPolicy benchmark, CPU, torch threads = {threads}, load average {load:.1f}, batch 1, latency per chunk in ms "
          f"(flow_vla default steps = {default_steps}; ACT has no integration steps)")
    header = f"{'model':<28} {'params M':>9} {'GFLOP':>7}"
    for steps in STEP_COUNTS:
        header += f" {f'{steps} step p50/p99':>17}"
    header += f" {'train samp/s':>12}"
    print(header)
    for name, row in results.items():
        line = f"{name:<28} {row['params_m']:>9.2f} {row['gflop_default']:>7.2f}"
        for steps in STEP_COUNTS:
            line += f" {row[f'p50_{steps}']:>8.1f}/{row[f'p99_{steps}']:<8.1f}"
        line += f" {row['samples_per_s']:>12.1f}"
        print(line)
    print("\nflow_vla compared with each model (>1: flow_vla is smaller / cheaper / faster):")
    for name, row in results.items():
        if row is reference:
            continue
        latency = row[f"p50_{default_steps}"] / reference[f"p50_{default_steps}"]
        print(
            f"  vs {name:<28} params {row['params_m'] / reference['params_m']:.2f}×  "
            f"GFLOP {row['gflop_default'] / max(reference['gflop_default'], 1e-9):.2f}×  "
            f"chunk latency at {default_steps} steps {latency:.2f}×  "
            f"training samples/s {reference['samples_per_s'] / row['samples_per_s']:.2f}×"
        )


def reaching_batch(batch_size: int, chunk: int, height: int, width: int, generator):
    """Synthetic reaching task: two coloured targets, the instruction names one, the chunk moves the six
    joints from the current state towards a pose derived from that target's position."""
    import torch

    red = torch.rand(batch_size, 2, generator=generator) * 2 - 1
    blue = torch.rand(batch_size, 2, generator=generator) * 2 - 1
    pick_red = torch.rand(batch_size, generator=generator) < 0.5
    target = torch.where(pick_red[:, None], red, blue)
    state = torch.rand(batch_size, STATE_DIM, generator=generator) * 2 - 1
    goal = torch.cat([target, target.flip(1), target * 0.5], dim=1)
    progress = torch.linspace(1.0 / chunk, 1.0, chunk)[None, :, None]
    actions = state[:, None, :] + progress * (goal - state)[:, None, :]
    images = torch.full((batch_size, 3, height, width), 0.2)
    size = max(4, height // 8)
    for i in range(batch_size):
        for channel, position in ((0, red[i]), (2, blue[i])):
            col = int((position[0] + 1) / 2 * (width - size))
            row = int((position[1] + 1) / 2 * (height - size))
            images[i, channel, row : row + size, col : col + size] = 1.0
    return {
        "observation.state": state,
        IMAGE_KEY: images,
        "action": actions,
        "action_is_pad": torch.zeros(batch_size, chunk, dtype=torch.bool),
        "task": ["reach the red target" if r else "reach the blue target" for r in pick_red.tolist()],
    }


def held_out_error_study(args, flow_config, _observation_batch) -> dict[int, float]:
    """Train the default flow_vla briefly, then compare 1/2/4/10-step chunks with held-out demonstrations."""
    import torch
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy

    torch.manual_seed(0)
    height, width = flow_config.image_size
    policy = FlowVLAPolicy(flow_config)
    preprocessor, _ = make_pre_post_processors(flow_config, dataset_stats=None)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=args.train_steps,
                                                    pct_start=0.1)
    generator = torch.Generator().manual_seed(1)
    policy.train()
    for step in range(1, args.train_steps + 1):
        batch = preprocessor(reaching_batch(16, flow_config.chunk_size, height, width, generator))
        loss, _ = policy.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 100 == 0 or step == args.train_steps:
            print(f"held-out study: training step {step}/{args.train_steps}, loss {loss.item():.4f}", flush=True)
    policy.eval()
    held_out = preprocessor(reaching_batch(64, flow_config.chunk_size, height, width, torch.Generator().manual_seed(2)))
    errors = {}
    for steps in STEP_COUNTS:
        noise = torch.randn(64, flow_config.chunk_size, flow_config.max_action_dim,
                            generator=torch.Generator().manual_seed(3))
        chunk = policy.predict_action_chunk(held_out, noise=noise, num_steps=steps)
        errors[steps] = float(((chunk - held_out["action"]) ** 2).mean())
    return errors


def write_tiny_smolvlm(directory, seed: int = 0) -> str:
    """A random SmolVLM (config, weights, word-level tokenizer, processor) in `directory`, so SmolVLA and
    flow_vla's pretrained backbone can be built and loaded offline, exactly as from a Hub checkout."""
    from pathlib import Path

    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<pad>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>",
                "<global-img>"]
    words = ["move", "the", "arm", "pick", "place", "cube", "up", "down", "left", "right", "red", "green", "blue", "a", "to", "and"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + words + [chr(c) for c in range(33, 127)]))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", bos_token="<|im_start|>",
        eos_token="<end_of_utterance>", additional_special_tokens=specials[2:],
        extra_special_tokens={"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                              "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
    )
    hf_tokenizer.padding_side = "right"
    text = {"vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 512, "pad_token_id": vocab["<pad>"]}
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 64,
                  "patch_size": 16}
    config = SmolVLMConfig(text_config=text, vision_config=vision, scale_factor=2, image_token_id=vocab["<image>"],
                           vocab_size=128, pad_token_id=vocab["<pad>"])
    with torch.random.fork_rng():  # the caller's random stream stays as it was
        torch.manual_seed(seed)
        SmolVLMForConditionalGeneration(config).save_pretrained(out)
    image_processor = SmolVLMImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 64},
                                            do_image_splitting=False)
    video_processor = SmolVLMVideoProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 64})
    SmolVLMProcessor(image_processor=image_processor, tokenizer=hf_tokenizer, video_processor=video_processor,
                     image_seq_len=4).save_pretrained(out)
    hf_tokenizer.save_pretrained(out)
    return str(out)

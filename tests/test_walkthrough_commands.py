"""Every command in the walk-throughs and the recipes' README is accepted by the parser of the command it names.

The fenced bash blocks are split into commands the way a shell would (continuation lines joined, redirections dropped,
`&&`, `|`, `;` and `&` separating commands, variables assigned earlier in the same file substituted). Each `lerobot-vla <sub>`,
`lerobot-*` and `accelerate launch ... lerobot-train` command then goes through the real parsers: `lerobot-vla`'s
argparse tree and the draccus configs its subcommands parse, LeRobot's own entry points (stopped right after
they parse their options), accelerate's launch parser. A `--policy.path` points at a tiny saved flow_vla config,
so option overrides of a checkpoint are checked against the policy's real fields.

Only the help text is skipped: draccus reads every option's description from the source, which would cost half
a minute, and parsing never needs it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "examples" / "real_arm_walkthrough.md", ROOT / "examples" / "virtual_arm_walkthrough.md",
        ROOT / "recipes" / "README.md"]
FENCED_BASH = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
REDIRECTION = re.compile(r"(?<=\s)\d*>(?:&\d+|>?\s*\S+)")  # 2>&1, > file, >> file
SEPARATORS = {"&&", "||", "|", ";", "&"}


class Parsed(Exception):
    """Raised by the patched parsers once a command's options are parsed: nothing after that runs."""

    def __init__(self, result):
        super().__init__("parsed")
        self.result = result


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of every fenced bash block, as argv lists, variables of earlier assignments expanded."""
    variables: dict[str, str] = {}
    commands = []
    for block in FENCED_BASH.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = REDIRECTION.sub("", line.replace("$(which lerobot-train)", "lerobot-train"))
            lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
            lexer.whitespace_split = True
            tokens = list(lexer)
            command: list[str] = []
            for token in [*tokens, ";"]:
                if token not in SEPARATORS:
                    command.append(token)
                    continue
                if len(command) == 1 and ASSIGNMENT.match(command[0]):
                    name, value = command[0].split("=", 1)
                    variables[name] = value
                elif command:
                    commands.append(command)
                command = []
    return [[_expand(token, variables) for token in command] for command in commands]


def _expand(token: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m[1], m[0]), token)


def program(command: list[str]) -> tuple[str, list[str]]:
    """(program name, its arguments), leading `NAME=value` environment assignments skipped."""
    i = 0
    while i < len(command) and ASSIGNMENT.match(command[i]):
        i += 1
    return Path(command[i]).name if i < len(command) else "", command[i + 1:]


def checked_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for command in shell_commands(doc.read_text()):
            name, args = program(command)
            if name.startswith("lerobot-") or name == "accelerate":
                found.append((f"{doc.parent.name}/{doc.name}", [name, *args]))
    return found


COMMANDS = checked_commands()


def test_the_walkthroughs_cover_every_stage():
    used = {" ".join(argv[:2]) if argv[0] == "lerobot-vla" else argv[0]
            for doc, argv in COMMANDS if doc.startswith("examples/")}
    stages = {"lerobot-vla find-port", "lerobot-vla setup-motors", "lerobot-calibrate", "lerobot-vla doctor",
              "lerobot-vla record", "lerobot-vla dataset-report", "lerobot-train", "lerobot-vla rollout",
              "lerobot-vla calibrate-uncertainty", "lerobot-vla flywheel-merge", "lerobot-vla eval",
              "lerobot-vla multiply"}
    assert stages <= used, f"stages without a command: {sorted(stages - used)}"
    assert any(argv[0] == "accelerate" for doc, argv in COMMANDS if doc == "recipes/README.md")


@pytest.fixture(scope="module")
def parsing(tmp_path_factory):
    """Fast draccus parsers, our config types registered, and a tiny saved flow_vla policy to stand for checkpoints."""
    from draccus.wrappers import docstring

    from lerobot_vla_plugin.workflow.draccus_options import register_config_types

    saved = docstring.get_attribute_docstring
    docstring.get_attribute_docstring = lambda *args, **kwargs: docstring.AttributeDocString()
    register_config_types(builtin_devices=True)
    checkpoint = _tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "pretrained_model")
    yield checkpoint
    docstring.get_attribute_docstring = saved


def _tiny_checkpoint(folder: Path) -> Path:
    """config.json of a flow_vla policy with two cameras (as the recipes train), and a train_config.json."""
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.configs.types import FeatureType, PolicyFeature

    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

    features = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,))}
    for camera in ("front", "wrist"):
        features[f"observation.images.{camera}"] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, 96, 128))
    policy = FlowVLAConfig(device="cpu", push_to_hub=False, input_features=features,
                           output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))})
    folder.mkdir(parents=True)
    policy._save_pretrained(folder)
    recipe = ROOT / "recipes" / "so101_virtual_demo_small_cpu.json"
    train = TrainPipelineConfig.from_pretrained(str(recipe), cli_args=[f"--output_dir={folder.parents[2]}"])
    train._save_pretrained(folder)
    return folder


def _standing_in(args: list[str], checkpoint: Path) -> list[str]:
    """Checkpoint paths (which exist only after training) replaced by the tiny checkpoint."""
    out = []
    for arg in args:
        if arg.startswith("--policy.path="):
            arg = f"--policy.path={checkpoint}"
        elif arg.startswith("--config_path=") and arg.endswith("/train_config.json"):
            arg = f"--config_path={checkpoint / 'train_config.json'}"
        out.append(arg)
    return out


def parse_lerobot_vla(args: list[str]) -> None:
    from lerobot_vla_plugin import cli

    parsed = cli.build_parser(args).parse_args(args)
    command = args[0]
    if command == "record":
        from lerobot_vla_plugin.workflow import record

        record.validate(record.parse_config(parsed.record_options))
    elif command == "rollout":
        from lerobot_vla_plugin.workflow import rollout_config

        rollout_config.parse_config(parsed.rollout_options)
    elif command == "eval":
        from lerobot_vla_plugin.workflow import evaluate

        evaluate.parse_config(parsed.eval_options)
    elif hasattr(parsed, "device_args"):
        from lerobot_vla_plugin.arms.cli_args import parse_device_config

        parse_device_config(parsed.device_args)


def parse_stock(name: str, args: list[str], monkeypatch) -> None:
    """Run the console script `name` until it has parsed its options (draccus, LeRobot's parser or argparse)."""
    import draccus

    entries = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == name]
    assert entries, f"no installed command is called {name}"
    [entry] = entries
    depth, stopping = [0], [True]
    parse = draccus.parse

    def parse_then_stop(*a, **kw):
        depth[0] += 1
        try:
            result = parse(*a, **kw)
        finally:
            depth[0] -= 1
        if depth[0] == 0 and stopping[0]:  # not a policy config loaded while parsing the command's own config
            raise Parsed(result)
        return result

    parse_args = argparse.ArgumentParser.parse_args

    def parse_args_then_stop(self, args=None, namespace=None):
        raise Parsed(parse_args(self, args, namespace))

    monkeypatch.setattr(draccus, "parse", parse_then_stop)
    monkeypatch.setattr("draccus.argparsing.parse", parse_then_stop)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args_then_stop)
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(Parsed) as parsed:
        entry.load()()
    config, stopping[0] = parsed.value.result, False
    if type(config).__name__ == "TrainPipelineConfig":
        config.validate()  # where lerobot-train loads --policy.path and applies its --policy.* overrides


def parse_accelerate(args: list[str], monkeypatch) -> None:
    from accelerate.commands.launch import launch_command_parser

    assert args[0] == "launch", args
    launch = launch_command_parser().parse_args(args[1:])
    script = Path(launch.training_script).name
    assert script.startswith("lerobot-"), f"accelerate launches {script}, not a lerobot command"
    parse_stock(script, launch.training_script_args, monkeypatch)


@pytest.mark.parametrize(("doc", "argv"), COMMANDS, ids=[f"{d}:{' '.join(a[:2])}" for d, a in COMMANDS])
def test_command_is_accepted_by_its_parser(doc, argv, parsing, monkeypatch, tmp_path):
    # From an empty folder holding only the recipes: the outputs the commands would write do not exist yet.
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    name, args = argv[0], _standing_in(argv[1:], parsing)
    try:
        if name == "lerobot-vla":
            parse_lerobot_vla(args)
        elif name == "accelerate":
            parse_accelerate(args, monkeypatch)
        else:
            parse_stock(name, args, monkeypatch)
    except SystemExit as exc:  # argparse and draccus report a bad option this way, after printing it
        pytest.fail(f"{doc}: `{shlex.join(argv)}` is rejected by its parser (exit {exc.code}); see stderr above")

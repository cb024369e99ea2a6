"""Every option our configs add to a stock `lerobot-*` command shows a description in its `--help`.

draccus takes an option's help from the comment next to the field in the source, following only the first base
class of each config, so a field declared in a mixin further along the bases would show up bare."""

from __future__ import annotations

import dataclasses

import pytest


def _our_config_classes():
    from lerobot_vla_plugin.cameras.config_virtual_camera import VirtualCameraConfig
    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig
    from lerobot_vla_plugin.robots.koch_follower.config_koch_follower import VlaKochFollowerConfig
    from lerobot_vla_plugin.robots.so_follower.config_so_follower import VlaSO100FollowerConfig, VlaSO101FollowerConfig
    from lerobot_vla_plugin.teleoperators.koch_leader.config_koch_leader import VlaKochLeaderConfig
    from lerobot_vla_plugin.teleoperators.so_leader.config_so_leader import VlaSO100LeaderConfig, VlaSO101LeaderConfig

    return [VlaSO100FollowerConfig, VlaSO101FollowerConfig, VlaKochFollowerConfig, VlaSO100LeaderConfig,
            VlaSO101LeaderConfig, VlaKochLeaderConfig, VirtualCameraConfig, FlowVLAConfig]


def _stock_base(cls):
    """The LeRobot class our config registers under (RobotConfig, TeleoperatorConfig, CameraConfig, ...)."""
    return next(base for base in cls.__mro__[1:] if base.__module__.startswith("lerobot.") and
                dataclasses.is_dataclass(base))


@pytest.mark.parametrize("cls", _our_config_classes(), ids=lambda cls: cls.__name__)
def test_every_option_we_add_has_a_help_line(cls):
    from draccus.wrappers.docstring import get_attribute_docstring, get_preferred_help_text

    stock = {f.name for f in dataclasses.fields(_stock_base(cls))}
    ours = [f.name for f in dataclasses.fields(cls) if f.name not in stock and f.init]
    assert ours
    bare = [name for name in ours if not (get_preferred_help_text(get_attribute_docstring(cls, name)) or "").strip()]
    assert not bare, f"{cls.__name__}: options without a --help description: {bare}"


def test_our_commands_parse_with_the_same_help_as_draccus_and_restore_its_source_reader(capsys):
    """`parse_options` reads each config class's source once; the help it prints is draccus's own, unchanged."""
    import draccus
    from draccus.wrappers import docstring

    from lerobot_vla_plugin.options import parse_options
    from lerobot_vla_plugin.workflow.draccus_options import register_config_types
    from lerobot_vla_plugin.workflow.rollout_config import RolloutConfig

    register_config_types(builtin_devices=True)
    helps = []
    for parse in (lambda args: parse_options(RolloutConfig, args),
                  lambda args: draccus.parse(config_class=RolloutConfig, args=args)):
        with pytest.raises(SystemExit):
            parse(["--help"])
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1] and "--rollout.hand_off_after_s" in helps[0]
    assert docstring.inspect.getsource is __import__("inspect").getsource
    parsed = parse_options(RolloutConfig, ["--rollout.episodes", "3"])
    assert parsed == draccus.parse(config_class=RolloutConfig, args=["--rollout.episodes", "3"])
    assert parsed.rollout.episodes == 3

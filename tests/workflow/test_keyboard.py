"""Episode keys from a real terminal (a pty), the key decoder, the hands-free squeeze, option spelling, cadence."""

from __future__ import annotations

import os
import pty
import termios

import pytest
from helpers import wait_until

from lerobot_vla_plugin.workflow.cadence import CadenceMeter
from lerobot_vla_plugin.workflow.keyboard import (
    NEXT,
    RERECORD,
    STOP,
    EpisodeEvents,
    GripperSqueezeTrigger,
    KeyDecoder,
    TerminalKeyReader,
)
from lerobot_vla_plugin.workflow.record import normalize_argv


@pytest.mark.parametrize(("data", "keys"), [
    (b"\x1b[C", ["right"]), (b"\x1b[D", ["left"]), (b"\x1bOC", ["right"]),  # arrows, normal and application mode
    (b"nRq", ["n", "r", "q"]), (b"\x1b[1;5C", ["right"]),  # Ctrl+arrow still an arrow
    (b"\x1b\x1b[D", ["esc", "left"]), (b"\x1b[A\x1b[15~", ["up"]),  # F5 is swallowed
])
def test_decoder_turns_terminal_bytes_into_keys(data, keys):
    decoder = KeyDecoder()
    assert decoder.feed(data) == keys
    assert not decoder.waiting_for_sequence


def test_decoder_handles_sequences_split_across_reads_and_a_lone_escape():
    decoder = KeyDecoder()
    assert decoder.feed(b"\x1b") == [] and decoder.waiting_for_sequence
    assert decoder.feed(b"[") == []
    assert decoder.feed(b"D") == ["left"]
    assert decoder.feed(b"\x1b") == []
    assert decoder.flush() == ["esc"]  # nothing followed: the Esc key itself


def test_terminal_reader_on_a_pty_sets_cbreak_reads_keys_and_restores_the_terminal():
    controller, terminal = pty.openpty()
    events = EpisodeEvents()
    seen: list[str] = []
    before = termios.tcgetattr(terminal)
    try:
        def on_key(key: str) -> None:
            seen.append(key)
            action = {"right": NEXT, "n": NEXT, "left": RERECORD, "r": RERECORD, "esc": STOP, "q": STOP}.get(key)
            if action:
                events.request(action, "terminal")

        with TerminalKeyReader(on_key, fd=terminal):
            mode = termios.tcgetattr(terminal)
            assert not mode[3] & termios.ICANON and not mode[3] & termios.ECHO  # keys arrive one by one, unechoed
            assert mode[3] & termios.ISIG  # Ctrl-C still interrupts
            os.write(controller, b"\x1b[C")
            wait_until(lambda: events.exit_early, what="→ to end the episode")
            assert not events.rerecord and not events.stop
            events.start_phase()
            assert not events.exit_early
            os.write(controller, b"r")
            wait_until(lambda: events.rerecord, what="r to re-record")
            assert events.take_rerecord() and not events.rerecord
            os.write(controller, b"\x1b")  # a lone Esc: recognised once no sequence follows
            wait_until(lambda: events.stop, what="Esc to stop")
        assert seen == ["right", "r", "esc"]
        assert termios.tcgetattr(terminal) == before
    finally:
        os.close(controller)
        os.close(terminal)


def test_the_same_key_heard_by_two_listeners_counts_once():
    now = [0.0]
    events = EpisodeEvents(clock=lambda: now[0])
    assert events.request(NEXT, "terminal")
    now[0] = 0.05
    assert not events.request(NEXT, "pynput")  # the same press seen by pynput too
    now[0] = 1.0
    assert events.request(NEXT, "pynput")
    with pytest.raises(ValueError, match="unknown episode action"):
        events.request("jump", "terminal")


def test_double_squeeze_of_the_leader_gripper_triggers_but_a_grasp_does_not():
    fired: list[float] = []
    trigger = GripperSqueezeTrigger(lambda: fired.append(1))

    def play(samples):
        return [trigger.observe({"gripper.pos": value}, t) for t, value in samples]

    rest = [(0.0, 50.0), (0.1, 50.0)]
    grasp = [(0.2, 10.0), (1.5, 10.0), (1.6, 50.0), (1.8, 10.0), (3.0, 10.0), (3.1, 50.0)]  # long holds
    assert not any(play(rest + grasp)) and not fired
    double = [(4.0, 12.0), (4.2, 50.0), (4.4, 12.0), (4.6, 50.0)]
    assert play(double) == [False, False, False, True] and len(fired) == 1
    assert not trigger.observe({"shoulder_pan.pos": 3.0}, 5.0)  # actions without a gripper are ignored


def test_options_accept_dashes_and_bare_flags():
    assert normalize_argv(["--min-hz", "25", "--push-to-hub", "--resume", "--dataset.fps=15", "--virtual", "so101"]
                          ) == ["--min_hz", "25", "--dataset.push_to_hub=true", "--resume=true", "--dataset.fps=15",
                                "--virtual", "so101"]
    assert normalize_argv(["--resume", "false", "--report=false"]) == ["--resume", "false", "--report=false"]


def test_cadence_on_the_data_clock_and_camera_fps_from_distinct_frames():
    """30 frames at 30 Hz where one camera hands back each frame twice: it delivered 15 fps."""
    meter = CadenceMeter(30, ["front", "wrist"])
    front = wrist = None
    for i in range(30):
        front = object()
        wrist = object() if i % 2 == 0 else wrist
        meter.frame({"front": front, "wrist": wrist}, wall_s=i / 30, data_s=i / 30)
    report = meter.report()
    assert report.frames == 30 and report.achieved_hz == pytest.approx(30.0)
    assert report.camera_fps == {"front": pytest.approx(30.0), "wrist": pytest.approx(15.0)}
    assert report.problems(25) == ["camera 'wrist' delivered 15.0 fps"]
    assert report.problems(None) == []
    metadata = report.metadata()
    assert metadata["achieved_hz"] == pytest.approx(30.0) and metadata["camera_fps"]["wrist"] == pytest.approx(15.0)


def test_cadence_counts_a_stalled_loop():
    """A stall of 0.5 s in a 1 s take: the rate falls and the late frame is counted."""
    meter = CadenceMeter(30, [])
    times = [i / 30 for i in range(15)] + [0.5 + 14 / 30 + i / 30 for i in range(15)]
    for t in times:
        meter.frame({}, wall_s=t, data_s=t)
    report = meter.report()
    assert report.late_frames == 1 and report.period_max_ms == pytest.approx(500.0)
    assert report.achieved_hz == pytest.approx(30 / (times[-1] - times[0] + 1 / 30), abs=0.001)
    assert report.problems(25) == [f"control loop ran at {report.achieved_hz:.1f} Hz"]

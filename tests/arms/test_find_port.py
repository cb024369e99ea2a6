"""`lerobot-vla find-port`: stable by-id paths, USB ids and the brltty warning, on real pyserial port records."""

from __future__ import annotations

from serial.tools.list_ports_common import ListPortInfo

from lerobot_vla_plugin.workflow.find_port import brltty_running, brltty_warning, describe_ports, format_ports


def _port(device: str, vid: int | None = None, pid: int | None = None) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.description, info.serial_number = vid, pid, "USB Single Serial", "5A46083062"
    return info


def test_each_port_gets_its_stable_path_usb_id_and_adapter_name(tmp_path):
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-1a86_USB_Single_Serial_5A46083062-if00").symlink_to("/dev/ttyACM0")
    ports = describe_ports([_port("/dev/ttyS0"), _port("/dev/ttyACM0", 0x1A86, 0x55D3)], by_id_dir=by_id)
    assert [p.device for p in ports] == ["/dev/ttyACM0", "/dev/ttyS0"]
    text = format_ports(ports)
    assert "/dev/ttyACM0  usb 1a86:55d3  CH343 - Waveshare/Feetech bus servo board" in text
    assert f"stable path: {by_id}/usb-1a86_USB_Single_Serial_5A46083062-if00" in text
    assert "/dev/ttyS0  usb -  no USB ids" in text
    assert "survives replugging" in text


def test_no_ports_says_what_to_check():
    assert "charge-only" in format_ports([])


def test_brltty_is_reported_only_when_it_runs(tmp_path):
    ports = describe_ports([_port("/dev/ttyUSB0", 0x1A86, 0x7523)], by_id_dir=tmp_path / "missing")
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "comm").write_text("systemd\n")
    assert brltty_warning(ports, proc_root=proc) is None
    (proc / "812").mkdir()
    (proc / "812" / "comm").write_text("brltty\n")
    warning = brltty_warning(ports, proc_root=proc)
    assert "brltty" in warning and "/dev/ttyUSB0" in warning and "sudo apt remove brltty" in warning


def test_the_command_lists_exactly_the_ports_of_this_machine(capsys):
    from serial.tools import list_ports

    from lerobot_vla_plugin.cli import main

    present = describe_ports(list_ports.comports())  # the setup: whatever serial ports this machine has
    assert main(["find-port"]) == 0
    out = capsys.readouterr().out
    listed = [line.split("  usb ")[0] for line in out.splitlines() if "  usb " in line]
    assert listed == [p.device for p in present]
    for port in present:
        assert f"{port.device}  usb {port.usb_id}  {port.adapter}" in out
    assert ("No serial ports found" in out) == (not present)
    assert ("brltty braille daemon is running" in out) == brltty_running()

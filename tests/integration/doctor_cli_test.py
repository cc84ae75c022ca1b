"""`spotfunnel doctor` end to end (Typer CliRunner): a healthy install exits 0, a broken tenant names file and field."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spotfunnel.cli import app
from spotfunnel.conversation.agent import TENANTS_DIR
from spotfunnel.ops.doctor import MIN_SNR_DB, codec_round_trips, run_doctor

runner = CliRunner()
DEMO = TENANTS_DIR / "maple-street-salon.yaml"


def tenants_dir(tmp_path: Path, text: str | None = None) -> Path:
    """A tenants folder holding the demo overlay, optionally rewritten."""
    folder = tmp_path / "tenants"
    folder.mkdir()
    target = folder / DEMO.name
    shutil.copyfile(DEMO, target)
    if text is not None:
        target.write_text(text, encoding="utf-8")
    return folder


def test_codec_paths_keep_the_tone_clean() -> None:
    by_path = {c.path: c for c in codec_round_trips()}
    assert set(by_path) == {"twilio", "sip pcmu", "sip pcma", "browser webrtc", "browser ws", "local"}
    for g711 in ("twilio", "sip pcmu", "sip pcma"):  # 160-byte payloads, about 38-42 dB
        assert by_path[g711].frame_bytes == 160 and 30 < by_path[g711].snr_db < 50, by_path[g711]
    assert by_path["local"].frame_bytes == 640 and by_path["browser ws"].frame_bytes == 640
    assert 60 < by_path["browser webrtc"].frame_bytes < 1000 and by_path["browser webrtc"].snr_db > 25
    assert all(c.ok and c.snr_db >= MIN_SNR_DB for c in by_path.values())


def test_good_install_exits_zero_and_prints_the_table(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    result = runner.invoke(app, ["doctor", "--tenant", "maple-street-salon"], env={"COLUMNS": "140"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Audio round trips" in out and "audio/x-mulaw" in out and "audio/x-alaw" in out
    assert re.search(r"twilio .* 8000 Hz .* 160 .* \d+\.\d dB", out)
    assert "not set: webhooks unverified" in out and "doctor: all good" in out


def test_broken_tenant_yaml_exits_nonzero_naming_the_file_and_field(tmp_path: Path) -> None:
    text = DEMO.read_text(encoding="utf-8").replace("slot_minutes: 15", "slot_minutes: -5")
    folder = tenants_dir(tmp_path, text)
    result = runner.invoke(app, ["doctor", "--tenants-dir", str(folder)], env={"COLUMNS": "140"})
    assert result.exit_code == 1
    assert f"{folder / DEMO.name}: profile.slot_minutes:" in result.output
    assert "problems found" in result.output


def test_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    folder = tenants_dir(tmp_path, "profile: [unclosed\n")
    result = runner.invoke(app, ["doctor", "--tenants-dir", str(folder)], env={"COLUMNS": "140"})
    assert result.exit_code == 1 and "YAML syntax error" in result.output and str(folder) in result.output


@pytest.mark.parametrize(("phone", "why"), [("4155550100", "not E.164"), ("+1415555010", "not a valid number")])
def test_bad_business_number_is_an_error(tmp_path: Path, phone: str, why: str) -> None:
    text = DEMO.read_text(encoding="utf-8").replace('phone: "+14155550100"', f'phone: "{phone}"')
    report = run_doctor(tenants_dir=tenants_dir(tmp_path, text), env={})
    errors = [f for f in report.findings if f.status == "error"]
    assert not report.ok and len(errors) == 1 and "profile.phone" in errors[0].check and why in errors[0].detail


def test_credentials_are_warnings_not_errors(tmp_path: Path) -> None:
    folder = tenants_dir(tmp_path)
    bare = run_doctor(tenants_dir=folder, env={})
    assert bare.ok and {f.check for f in bare.findings if f.status == "warn"} == {"TWILIO_AUTH_TOKEN",
                                                                              "TWILIO_ACCOUNT_SID"}
    no_api_token = run_doctor(tenants_dir=folder, env={"TWILIO_AUTH_TOKEN": "x", "TWILIO_ACCOUNT_SID": "AC1"})
    assert [(f.check, f.status) for f in no_api_token.findings if f.status != "ok"] == [
        ("SPOTFUNNEL_API_TOKEN", "warn")]
    keyed = run_doctor(tenants_dir=folder, env={"TWILIO_AUTH_TOKEN": "x", "TWILIO_ACCOUNT_SID": "AC1",
                                                "SPOTFUNNEL_API_TOKEN": "s3cret"})
    assert not [f for f in keyed.findings if f.status != "ok"]


def test_empty_tenants_dir_is_an_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["doctor", "--tenants-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no tenant overlay" in result.output


def test_one_broken_tenant_among_good_ones_fails_doctor_and_names_only_itself(tmp_path: Path) -> None:
    folder = tenants_dir(tmp_path)
    demo = DEMO.read_text(encoding="utf-8")
    (folder / "corner-barber.yaml").write_text(
        demo.replace("id: maple-street-salon", "id: corner-barber").replace('phone: "+14155550100"',
                                                                              'phone: "+12125550134"'))
    (folder / "broken-spa.yaml").write_text(
        demo.replace("id: maple-street-salon", "id: broken-spa").replace("capacity: 1", "capacity: lots"))
    (folder / "salon-twin.yaml").write_text(demo.replace("id: maple-street-salon", "id: salon-twin"))
    result = runner.invoke(app, ["doctor", "--tenants-dir", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "problems found" in result.output
    problems = [line for line in result.output.splitlines() if line.startswith("ERROR: ")]
    assert len(problems) == 2, problems
    assert f"ERROR: tenant broken-spa: {folder / 'broken-spa.yaml'}: profile.capacity:" in problems[0]
    assert (f"ERROR: tenant salon-twin: {folder / 'salon-twin.yaml'}: profile.phone: +14155550100 is already "
            "tenant 'maple-street-salon'") in problems[1]

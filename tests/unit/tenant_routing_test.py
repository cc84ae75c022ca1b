"""Tenant routing: the dialled number matches a tenant's exactly (E.164), and a broken tenant file
is reported at start and affects only itself."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spotfunnel.business import e164
from spotfunnel.calls.call import CallSetup, CallSetupError
from spotfunnel.calls.directory import CallDirectory
from spotfunnel.conversation.agent import TENANTS_DIR, AgentConfig
from spotfunnel.observability.logging import configure_logging
from spotfunnel.transports.base import CallStarted

DEMO = TENANTS_DIR / "maple-street-salon.yaml"
SALON = "+14155550100"


def _no_setup(agent: AgentConfig) -> CallSetup:
    raise AssertionError("routing only")


def _dial(directory: CallDirectory, called: str = "", tenant: str | None = None) -> str:
    started = CallStarted(call_id="c1", caller_id="+14155550166", called=called, tenant_id=tenant)
    return directory.agent_for(started).profile.id


def _tenant(folder: Path, tenant_id: str, phone: str, edit: tuple[str, str] | None = None) -> Path:
    """A copy of the demo overlay as tenant `tenant_id` with number `phone` (and one optional edit)."""
    text = DEMO.read_text(encoding="utf-8").replace("id: maple-street-salon", f"id: {tenant_id}")
    text = text.replace(f'phone: "{SALON}"', f'phone: "{phone}"')
    if edit is not None:
        assert edit[0] in text
        text = text.replace(*edit)
    path = folder / f"{tenant_id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    shutil.copyfile(DEMO, tenants / DEMO.name)
    return tenants


@pytest.mark.parametrize("called", ["0", "100", "0100", "5550100", "4155550100", "14155550100", "+100",
                                    "+24155550100", "x" * 5000, ""])
def test_only_the_exact_number_reaches_the_salon(called: str) -> None:
    directory = CallDirectory(default_setup=_no_setup)  # the packaged tenants
    with pytest.raises(CallSetupError, match="no tenant answers"):
        _dial(directory, called)


@pytest.mark.parametrize("called", [SALON, "+1 (415) 555-0100", "+1-415-555-0100", "tel:+14155550100"])
def test_written_forms_of_the_number_normalise_to_it(called: str) -> None:
    assert e164(called) == SALON
    assert _dial(CallDirectory(default_setup=_no_setup), called) == "maple-street-salon"


def test_a_broken_tenant_is_reported_at_start_and_affects_only_itself(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tenant(folder, "corner-barber", "+1 212 555 0134")
    broken = _tenant(folder, "broken-spa", "+14155550177", ("slot_minutes: 15", "slot_minutes: -5"))
    (folder / "garbled.yaml").write_text("profile: [unclosed\n", encoding="utf-8")
    configure_logging("info")
    directory = CallDirectory(default_setup=_no_setup, tenants_dir=folder)
    logged = capsys.readouterr().err
    assert "tenant.invalid" in logged and f"{broken}: profile.slot_minutes:" in logged
    assert f"{folder / 'garbled.yaml'}: line 2" in logged and "YAML syntax error" in logged

    assert _dial(directory, SALON) == "maple-street-salon"  # the others still route, by number and by id
    assert _dial(directory, "+12125550134") == "corner-barber"
    assert _dial(directory, tenant="corner-barber") == "corner-barber"
    assert [a.profile.id for a in directory.agents()] == ["corner-barber", "maple-street-salon"]
    with pytest.raises(CallSetupError, match="no tenant answers"):
        _dial(directory, "+14155550177")  # the broken tenant's number reaches nobody else
    with pytest.raises(CallSetupError, match=r"broken-spa\.yaml: profile\.slot_minutes"):
        _dial(directory, tenant="broken-spa")
    assert not directory.knows("broken-spa") and directory.knows("corner-barber")


def test_a_second_tenant_with_the_same_number_is_refused(folder: Path) -> None:
    twin = _tenant(folder, "salon-twin", "+1 415 555 0100")
    directory = CallDirectory(default_setup=_no_setup, tenants_dir=folder)
    assert _dial(directory, SALON) == "maple-street-salon"
    with pytest.raises(CallSetupError, match=rf"{twin}: profile.phone: \+14155550100 is already tenant "
                                             "'maple-street-salon'"):
        _dial(directory, tenant="salon-twin")


def test_a_tenant_added_later_is_found(folder: Path) -> None:
    directory = CallDirectory(default_setup=_no_setup, tenants_dir=folder)
    with pytest.raises(CallSetupError):
        _dial(directory, "+12125550134")
    _tenant(folder, "corner-barber", "+12125550134")
    assert _dial(directory, "+12125550134") == "corner-barber"

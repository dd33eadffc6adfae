"""Who may log in: a studio reachable from other machines always asks for a login of 12+ characters, failed logins
slow down per client, and a refused start leaves nothing behind."""
from __future__ import annotations

import re

import pytest

from studio.cli import EXIT_USER_ERROR, main
from studio.ui.launch import LaunchOptions, login_for
from studio.ui.login_guard import LoginThrottle, client_address


@pytest.mark.parametrize("options", [LaunchOptions(share=True, auth="a:b"),
                                     LaunchOptions(host="0.0.0.0", auth="ana:eleven-char")])
def test_a_short_password_is_refused_where_other_machines_can_reach_the_studio(options):
    with pytest.raises(ValueError, match="at least 12 characters") as refused:
        login_for(options)
    suggested = re.search(r"--auth (\S+):(\S+)", str(refused.value))
    assert suggested and len(suggested.group(2)) >= 12  # a generated one is offered


@pytest.mark.parametrize("auth", [" : ", "ana:", ":password-long-enough", "no-colon", "  :   "])
def test_blank_users_and_passwords_are_refused(auth):
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        login_for(LaunchOptions(share=True, auth=auth))


def test_a_non_loopback_host_without_auth_gets_a_generated_login(capsys):
    options = LaunchOptions(host="0.0.0.0")
    user, password = login_for(options)
    assert len(password) >= 12 and f"password: {password}" in capsys.readouterr().out
    assert options.remote


def test_loopback_needs_no_login_and_the_test_flag_only_changes_the_path_rules():
    assert login_for(LaunchOptions()) is None and not LaunchOptions().remote
    assert login_for(LaunchOptions(auth="me:short")) == ("me", "short")  # on loopback the operator decides
    forced = LaunchOptions(remote_rules=True)
    assert forced.remote and login_for(forced) is None


def test_the_cli_refuses_a_weak_share_login_before_creating_anything(tmp_path, capsys):
    workspace = tmp_path / "workspace"
    assert main(["--share", "--auth", "a:b", "--workspace", str(workspace)]) == EXIT_USER_ERROR
    assert "at least 12 characters" in capsys.readouterr().err
    assert not workspace.exists()
    assert main(["--data-dir", str(tmp_path / "missing"), "--workspace", str(workspace)]) == EXIT_USER_ERROR
    assert "no such folder" in capsys.readouterr().err


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_each_failure_past_the_free_ones_doubles_the_wait_and_success_clears_it():
    clock, lines = _Clock(), []
    guard = LoginThrottle(None, free_failures=3, base_delay=1.0, max_delay=8.0, clock=clock, log=lines.append)
    waits = []
    for _ in range(8):
        guard.record("10.0.0.7", ok=False)
        waits.append(guard.wait_for("10.0.0.7"))
        clock.now += waits[-1]
    assert waits == [0, 0, 0, 1, 2, 4, 8, 8]
    assert guard.wait_for("10.0.0.8") == 0  # another client is not slowed down
    assert lines[3] == "login failed from 10.0.0.7 (4 failed in a row; next try allowed in 1 s)"
    guard.record("10.0.0.7", ok=True)
    guard.record("10.0.0.7", ok=False)
    assert guard.wait_for("10.0.0.7") == 0


def test_the_client_behind_the_local_share_tunnel_is_the_forwarded_address():
    forwarded = [(b"x-forwarded-for", b"203.0.113.9, 10.0.0.1")]
    assert client_address({"client": ("127.0.0.1", 5000), "headers": forwarded}) == "203.0.113.9"
    assert client_address({"client": ("198.51.100.4", 5000), "headers": forwarded}) == "198.51.100.4"

"""Start the studio: bind 127.0.0.1 by default, take the next free port, never reachable from other machines
without a login of at least 12 characters; failed logins slow down (``login_guard``)."""
from __future__ import annotations

import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from starlette.middleware import Middleware

from studio.app.access import is_loopback

from .login_guard import LoginThrottle


MIN_REMOTE_PASSWORD = 12


@dataclass
class LaunchOptions:
    host: str = "127.0.0.1"
    port: int = 7860
    workspace: Path = Path("workspace")
    share: bool = False
    auth: str = ""  # "user:password"
    data_dirs: tuple[str, ...] = ()  # --data-dir DIR[:rw]: folders remote users may reach besides the workspace
    remote_rules: bool = False  # the remote-user rules on loopback too (to try what a share-link user can do)
    max_upload_mb: int = 2048

    @property
    def reachable_from_elsewhere(self) -> bool:
        return self.share or not is_loopback(self.host)

    @property
    def remote(self) -> bool:
        """Whether the remote-user rules of ``studio.app.access`` apply to every path the page names."""
        return self.reachable_from_elsewhere or self.remote_rules


def free_port(host: str, start: int, tries: int = 50) -> int:
    """``start`` or the next port after it that nothing listens on."""
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port between {start} and {start + tries - 1} on {host}; pass --port")


def parse_auth(text: str) -> tuple[str, str]:
    user, sep, password = (text or "").partition(":")
    user = user.strip()
    if not sep or not user or not password.strip():
        raise ValueError("--auth takes USER:PASSWORD, e.g. --auth me:a-long-secret (neither part may be blank)")
    return user, password


def login_for(options: LaunchOptions) -> tuple[str, str] | None:
    """The login the server requires: the given one, or a generated one (printed once) when the studio is reachable
    from other machines (--share, a non-loopback --host). A short password is refused there."""
    where = "--share" if options.share else f"--host {options.host}"
    if options.auth:
        login = parse_auth(options.auth)
        if options.reachable_from_elsewhere and len(login[1]) < MIN_REMOTE_PASSWORD:
            raise ValueError(f"{where} makes the studio reachable from other machines, so the --auth password needs "
                             f"at least {MIN_REMOTE_PASSWORD} characters; for example --auth "
                             f"{login[0]}:{secrets.token_urlsafe(12)} (or leave --auth out to get one generated)")
        return login
    if options.reachable_from_elsewhere:
        login = ("studio", secrets.token_urlsafe(12))
        print(f"{where}: the studio is protected by a login — user: {login[0]}  password: {login[1]}", flush=True)
        return login
    return None


def launch(options: LaunchOptions, block: bool = True):
    """Build the app around a ``Studio`` for the workspace and serve it; returns (app, local url)."""
    from studio.app import Studio

    from .app import build_app

    login = login_for(options)  # before anything is created: a refused login leaves no trace
    studio = Studio(options.workspace, remote=options.remote, data_dirs=options.data_dirs)
    port = free_port(options.host, options.port)
    if port != options.port:
        print(f"port {options.port} is busy; using {port}", flush=True)
    demo = build_app(studio)
    demo.queue(default_concurrency_limit=4)
    _, local_url, share_url = demo.launch(
        server_name=options.host, server_port=port, share=options.share, auth=login,
        allowed_paths=[str(studio.workspace)], prevent_thread_lock=True, quiet=True,
        footer_links=["settings"], show_error=True, max_file_size=options.max_upload_mb * 1024 * 1024,
        app_kwargs={"middleware": [Middleware(LoginThrottle)]},
    )
    print(f"LoRA Studio is running at {local_url} (workspace: {studio.workspace})", flush=True)
    if options.remote:
        print("remote-user rules: pages read and write only under " + "; ".join(studio.access.describe()),
              flush=True)
    if options.share and not share_url:
        print("--share: no public link could be made (no internet?); the studio keeps running locally.", flush=True)
    elif share_url:
        print(f"public link (login required): {share_url}", flush=True)
    if block:
        try:
            demo.block_thread()
        except KeyboardInterrupt:
            print("\nclosing the studio", file=sys.stderr)
            studio.training.stop()
            demo.close()
    return demo, local_url

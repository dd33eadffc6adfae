"""Start the studio: bind 127.0.0.1 by default, take the next free port, never share without a login."""
from __future__ import annotations

import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LaunchOptions:
    host: str = "127.0.0.1"
    port: int = 7860
    workspace: Path = Path("workspace")
    share: bool = False
    auth: str = ""  # "user:password"


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
    if not sep or not user or not password:
        raise ValueError("--auth takes USER:PASSWORD, e.g. --auth me:a-long-secret")
    return user, password


def login_for(options: LaunchOptions) -> tuple[str, str] | None:
    """The login the server requires: the given one, or with --share a generated one (printed once)."""
    if options.auth:
        return parse_auth(options.auth)
    if options.share:
        login = ("studio", secrets.token_urlsafe(12))
        print(f"--share: the link is protected by a login — user: {login[0]}  password: {login[1]}", flush=True)
        return login
    return None


def launch(options: LaunchOptions, block: bool = True):
    """Build the app around a ``Studio`` for the workspace and serve it; returns (app, local url)."""
    from studio.service import Studio

    from .app import build_app

    studio = Studio(options.workspace)
    port = free_port(options.host, options.port)
    if port != options.port:
        print(f"port {options.port} is busy; using {port}", flush=True)
    login = login_for(options)
    demo = build_app(studio)
    demo.queue(default_concurrency_limit=4)
    _, local_url, share_url = demo.launch(
        server_name=options.host, server_port=port, share=options.share, auth=login,
        allowed_paths=[str(studio.workspace)], prevent_thread_lock=True, quiet=True,
        footer_links=["settings"], show_error=True,
    )
    print(f"LoRA Studio is running at {local_url} (workspace: {studio.workspace})", flush=True)
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

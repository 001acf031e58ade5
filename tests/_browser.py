"""Headless Chromium for page tests (Debian's `chromium` package).

Without a browser the page tests are skipped, saying why; CI sets
HM3_REQUIRE_BROWSER=1 (after installing chromium) so that there they fail instead.
"""

import os
import re
import shutil
import subprocess

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    message = f"no headless browser on PATH (tried {', '.join(BROWSERS)}): apt-get install chromium"
    if os.environ.get("HM3_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def render(page, fragment: str = "") -> tuple[dict, str, str]:
    """Load a local page, let its scripts run, and return (the <body> data-*
    attributes, the DOM after the scripts ran, the browser's stderr)."""
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    command = [
        browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--virtual-time-budget=15000",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        url,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, proc.stdout[:2000]
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))
    return attrs, proc.stdout, proc.stderr


def console_errors(stderr: str) -> list[str]:
    """The page's console errors and uncaught exceptions as Chromium logs them."""
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line and ("error" in line.lower() or "Uncaught" in line)
    ]

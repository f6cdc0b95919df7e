"""What the page tests share: servers in their own process group on 127.0.0.1, stopped by
that group's id, and Debian's Chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def chromium_path() -> str:
    """The system Chromium; its absence is a failure that says how to install it."""
    path = os.environ.get("EKAGEN_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("the page tests need Debian's Chromium: make browser "
                    "(apt-get install chromium), or EKAGEN_CHROMIUM=/path/to/chromium")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(cmd: list[str], url: str, cwd: Path, log: Path, env: dict | None = None,
           timeout: float = 180, stop_signal: int = signal.SIGINT) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in a new process group until ``url`` answers 200; on exit the group gets
    ``stop_signal`` (SIGINT lets Gradio close cleanly), then SIGKILL if it lingers."""
    handle = log.open("w")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer in {timeout} s:\n{log.read_text()}")
            time.sleep(0.5)
        yield proc
    finally:
        stop_group(proc, stop_signal)
        handle.close()


def stop_group(proc: subprocess.Popen, first: int = signal.SIGINT, grace: float = 20) -> None:
    try:
        os.killpg(proc.pid, first)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=grace)


def group_processes(pgid: int) -> list[str]:
    """The command lines of every live process in process group ``pgid``."""
    import psutil

    out = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(process.info["pid"]) == pgid:
                out.append(" ".join(process.info["cmdline"] or []))
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out


@contextmanager
def browser_page(width: int = 1280, height: int = 1000) -> Iterator:
    """A Playwright page in headless system Chromium; ``page.requested`` lists every URL the
    page asked for, so a test can check nothing left 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(),
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.requested = []
            page.on("request", lambda request: page.requested.append(request.url))
            yield page
        finally:
            browser.close()


def demo_write_report(page, upload: list[Path], expect_report: bool = True,
                      timeout_ms: int = 120_000) -> tuple[str, float]:
    """On a fresh ``ekagen serve`` page: upload files, press *Write report* and wait for the
    report (or the page's message); returns it and the seconds from the press until then."""
    page.reload()
    page.wait_for_selector("#write")
    page.locator("#upload input[type=file]").set_input_files([str(p) for p in upload])
    page.wait_for_function(f"document.querySelectorAll('#upload .file-name, #upload td')"
                           f".length >= {len(upload)}", timeout=60_000)
    start = time.perf_counter()
    page.click("#write")
    if expect_report:
        page.wait_for_function("document.querySelector('#report textarea').value.length > 0 &&"
                               "document.querySelector('#status').innerText.includes('Time:')",
                               timeout=timeout_ms)
        return page.input_value("#report textarea"), time.perf_counter() - start
    page.wait_for_function("document.querySelector('#status').innerText"
                           ".includes('Could not write a report')", timeout=timeout_ms)
    return page.inner_text("#status"), time.perf_counter() - start


def screenshot_dir(tmp_path: Path) -> Path:
    """Where page tests save their screenshots: ``EKAGEN_SCREENSHOTS`` or the test's tmp."""
    folder = Path(os.environ.get("EKAGEN_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder

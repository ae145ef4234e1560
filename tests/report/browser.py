"""Open a page in headless Chromium and report what a reader would hit: console errors, broken
images, sideways scrolling, network requests; and take a screenshot.

Driven over the Chrome DevTools Protocol on `--remote-debugging-pipe` (NUL-separated JSON on file
descriptors 3 and 4, as Playwright and Puppeteer use it), so no new Python dependency and no
port. Why not `chromium --screenshot --dump-dom`: those report neither console errors nor image
failures reliably, and cannot measure layout; CDP gives all of them from the live page.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# what the page reports about itself once loaded and every image decoded (or failed)
CHECK_JS = """(async () => {
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
  const root = document.documentElement;
  return {
    scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
    images: document.images.length,
    broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 80)),
  };
})()"""


def find_chromium() -> str | None:
    return next((p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))), None)


@dataclass
class PageCheck:
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    overflow_px: int = 0  # how far the page scrolls sideways (0: it does not)
    images: int = 0
    requests: list[str] = field(default_factory=list)  # anything fetched that is not the page or inline data
    screenshot: bytes = b""


def _high_fd(fd: int) -> int:
    """The fd moved above 4, so dup2 onto 3 and 4 in the child cannot clobber its partner."""
    if fd > 4:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Chromium:
    """One headless browser; `check(url)` opens a tab, inspects it and closes it."""

    def __init__(self, exe: str, timeout: float = 60.0) -> None:
        self.timeout, self._id, self._buf = timeout, 0, b""
        self.events: list[dict[str, Any]] = []
        self.profile = tempfile.mkdtemp(prefix="occiforge-chromium-")
        to_child, self._w = map(_high_fd, os.pipe())
        self._r, from_child = map(_high_fd, os.pipe())

        def fds() -> None:  # in the child: the pipe ends at the numbers Chromium expects
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--mute-audio", "--hide-scrollbars", "about:blank"]
        # close_fds=False: subprocess would close 3 and 4 after preexec_fn; Python's own fds are
        # non-inheritable anyway (PEP 446), so nothing else leaks into the browser
        self.proc = subprocess.Popen(args, close_fds=False, preexec_fn=fds, stdout=subprocess.DEVNULL,  # noqa: PLW1509
                                     stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self.proc.poll()})")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self.events.append(self._read(deadline))

    def check(self, url: str, width: int = 1280, height: int = 900, full_page: bool = False) -> PageCheck:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=s)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, s)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, s)
        self.wait_for("Page.loadEventFired", s)
        page = self.send("Runtime.evaluate", {"expression": CHECK_JS, "awaitPromise": True, "returnByValue": True}, s)["result"]["value"]
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full_page}, s)["data"]
        out = PageCheck(broken_images=page["broken"], images=page["images"], screenshot=base64.b64decode(shot),
                        overflow_px=max(0, page["scrollWidth"] - page["clientWidth"]))
        for e in (e for e in self.events if e.get("sessionId") == s):
            out.console_errors += _error_text(e)
            if e.get("method") == "Network.requestWillBeSent":
                req = e["params"]["request"]["url"]
                if not req.startswith(("data:", "about:")) and req != url:
                    out.requests.append(req)
        self.send("Target.closeTarget", {"targetId": target})
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)


def _error_text(e: dict[str, Any]) -> list[str]:
    """Console errors, uncaught exceptions and browser-logged errors (failed loads) of one event."""
    p, method = e.get("params", {}), e.get("method")
    if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        return [" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))]
    if method == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails", {})
        return [d.get("exception", {}).get("description") or d.get("text", "exception")]
    if method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
        return [f"{p['entry'].get('text')} {p['entry'].get('url', '')}".strip()]
    return []


def check_page(path: Path, width: int = 1280, height: int = 900, exe: str | None = None, full_page: bool = False) -> PageCheck:
    """Open a local HTML file in a fresh headless Chromium and inspect it."""
    browser = Chromium(exe or find_chromium() or "chromium")
    try:
        return browser.check(path.resolve().as_uri(), width, height, full_page)
    finally:
        browser.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.report.browser PAGE.html OUT.png [WIDTH HEIGHT]`: the README's screenshot,
    saved as a 256-colour PNG to keep it small."""
    import io
    import sys

    from PIL import Image

    args = sys.argv[1:] if argv is None else argv
    width, height = (int(args[2]), int(args[3])) if len(args) > 3 else (1280, 1500)
    page = check_page(Path(args[0]), width, height)
    image = Image.open(io.BytesIO(page.screenshot)).convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    image.save(args[1], optimize=True)
    print(f"{args[1]}: {Path(args[1]).stat().st_size / 1000:.0f} KB; console errors {page.console_errors or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

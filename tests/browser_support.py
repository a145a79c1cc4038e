"""A throwaway Jupyter server and a notebook page in headless Chromium, for the browser tests.

The server runs one of two frontends on jupyter_server (:data:`FRONTENDS`): JupyterLab 4, or
Notebook 7, which is built from JupyterLab's own notebook widgets, so one set of DOM selectors
reads both. Everything the server writes (settings, workspaces, runtime files, the notebook it
runs) lives in a temporary folder, so a run leaves the repository and the user's own Jupyter
setup untouched. Only loopback traffic: the server listens on 127.0.0.1, and Chromium
resolves no host name at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo.ipynb"
ARTIFACTS = Path(os.environ.get("JGM_ARTIFACTS", REPO / "test-artifacts"))  # screenshots
DOCS = REPO / "docs"  # the README's pictures, written only when PICTURES is on
PICTURES = os.environ.get("JGM_PICTURES", "") == "1"  # docs/make_pictures.sh sets it
CHROMIUM = Path(os.environ.get("JGM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # Resolve no host name: the page may only talk to the server on 127.0.0.1.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
VIEWPORT = {"width": 1400, "height": 1000}

# Per-plugin user settings: no news or update checks (their pop-up would cover the page and
# they would leave the machine), every cell attached to the DOM so locators see all of them.
USER_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}

STDERR_MIME = "application/vnd.jupyter.stderr"


@dataclass(frozen=True)
class Frontend:
    """A web frontend the browser tests drive; both run as extensions of one jupyter_server.

    Attributes:
      name: the short name, as in test ids and file names (``lab``, ``notebook``).
      title: the name a person knows it by.
      module: what ``python -m`` starts.
      app: its server extension's configurable class, for the settings given on the command line.
      tree: the URL path that opens a notebook, followed by the notebook's path.
      known_page_errors: patterns of uncaught page errors the frontend itself throws, whatever
        the notebook holds; :meth:`NotebookPage.unexpected_page_errors` leaves them out.
    """

    name: str
    title: str
    module: str
    app: str
    tree: str
    known_page_errors: tuple[str, ...] = ()


FRONTENDS: dict[str, Frontend] = {
    "lab": Frontend("lab", "JupyterLab", "jupyterlab", "LabApp", "/lab/tree"),
    "notebook": Frontend(
        "notebook",
        "Notebook 7",
        "notebook",
        "JupyterNotebookApp",
        "/notebooks",
        # Notebook 7.6 at start-up, with no settings at all too: the keyboard-shortcuts plugin's
        # pluginChanged handler reads the schema of "@jupyterlab/docmanager-extension:plugin"
        # before the settings registry holds it. Shortcuts work regardless.
        known_page_errors=(r"^Cannot read properties of undefined \(reading 'schema'\)$",),
    ),
}


def missing_reason(frontend: Frontend = FRONTENDS["lab"]) -> str | None:
    """Why the browser tests cannot run ``frontend`` here, or None when everything they need is installed."""
    for module in dict.fromkeys(("playwright", "jupyterlab", "jupyterlab_widgets", frontend.module)):
        try:
            __import__(module)
        except ImportError:
            return f"the Python package '{module}' is not installed (pip install -e '.[browser]')"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set JGM_CHROMIUM)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds.

    Args:
      check: a function of no arguments.
      timeout: seconds to wait at most.
      what: what is awaited, for the error message.
      interval: seconds between polls.

    Returns:
      The first truthy value ``check()`` returned.

    Raises:
      TimeoutError: ``check()`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(interval)


@dataclass
class LabServer:
    """A running Jupyter server started by :func:`lab_server`, serving JupyterLab or Notebook 7.

    Attributes:
      frontend: the frontend it serves.
      url: the base URL, e.g. ``http://127.0.0.1:40123``.
      root: the server's root folder (a temporary copy of the notebooks).
      log: the file the server writes its log to.
      process: the server process (leader of its own process group).
    """

    frontend: Frontend
    url: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]

    def api(self, path: str, method: str = "GET", body: Any = None, timeout: float = 10) -> Any:
        """Call the server's REST API and return the decoded JSON (None for an empty reply)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            text = reply.read()
        return json.loads(text) if text.strip() else None

    def kernels(self) -> list[dict[str, Any]]:
        """The server's kernels, as ``GET /api/kernels`` reports them."""
        return self.api("/api/kernels")

    def kernels_or_none(self) -> list[dict[str, Any]] | None:
        """Like :meth:`kernels`, but None for a failed request (polls try again)."""
        try:
            return self.kernels()
        except (OSError, ValueError):  # URLError and HTTPError are OSErrors
            return None

    def wait_kernel_ready(self, timeout: float = 120) -> dict[str, Any]:
        """Wait for a kernel with a connected client and ``execution_state == "idle"``.

        The page shows its idle indicator before the kernel's socket is connected, and
        clicks made then are lost; the server's own view is the reliable one.
        """

        def ready() -> dict[str, Any] | None:
            for kernel in self.kernels_or_none() or ():
                if kernel.get("connections", 0) > 0 and kernel.get("execution_state") == "idle":
                    return kernel
            return None

        return wait_until(ready, timeout, "a connected, idle kernel")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log, for failure messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _write_user_settings(folder: Path, settings: dict[str, dict[str, Any]]) -> None:
    for plugin, values in settings.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


@contextlib.contextmanager
def lab_server(
    workdir: Path,
    frontend: Frontend = FRONTENDS["lab"],
    notebooks: tuple[Path, ...] = (DEMO,),
    settings: dict[str, dict[str, Any]] | None = None,
    timeout: float = 90,
) -> Iterator[LabServer]:
    """Start ``frontend`` on a free loopback port in ``workdir``; shut it and its kernels down after.

    Args:
      workdir: an empty temporary folder; the server's root, settings and runtime files go here.
      frontend: JupyterLab or Notebook 7 (:data:`FRONTENDS`); both read the same user settings.
      notebooks: files copied into the server's root (the originals are never opened).
      settings: per-plugin user settings, by plugin id; default :data:`USER_SETTINGS`.
      timeout: seconds to wait for the server to answer.

    Yields:
      The running :class:`LabServer`.
    """
    root, home = workdir / "root", workdir / "home"
    for folder in (root, home):
        folder.mkdir(parents=True, exist_ok=True)
    for notebook in notebooks:
        shutil.copy(notebook, root / notebook.name)
    user_settings = home / "lab-settings"
    _write_user_settings(user_settings, USER_SETTINGS if settings is None else settings)

    port = free_port()
    env = {
        **os.environ,
        # The user's own Jupyter and IPython configuration stays out of the test.
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(user_settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        frontend.module,
        "--no-browser",
        "--allow-root",  # CI runs as root
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.disable_check_xsrf=True",  # the teardown stops kernels through the API
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        f"--{frontend.app}.user_settings_dir={user_settings}",
        f"--{frontend.app}.workspaces_dir={home / 'workspaces'}",
        # JupyterLab's extension loads beside Notebook 7 too: these hold for it either way.
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
    ]
    log = workdir / f"{frontend.module}.log"
    with log.open("wb") as log_file:  # kept in the artifacts after the run, for a failure's story
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kernels go down with it
        )
    server = LabServer(frontend=frontend, url=f"http://127.0.0.1:{port}", root=root, log=log, process=process)
    try:

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{frontend.title} exited with code {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                return server.api("/api/status", timeout=2) is not None
            return False

        wait_until(answers, timeout, f"{frontend.title} on port {port}", interval=0.25)
        yield server
    finally:
        _shut_down(server)
        with contextlib.suppress(OSError):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, ARTIFACTS / f"browser-{frontend.module}.log")


def _shut_down(server: LabServer) -> None:
    """Stop the kernels through the API, then the server; kill what is left of its process group."""
    with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
        for kernel in server.kernels():
            server.api(f"/api/kernels/{kernel['id']}", method="DELETE", timeout=15)
        server.api("/api/shutdown", method="POST", timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=15)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if server.process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=10)
    # A kernel that outlived the server is still in the group the server led.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGKILL)


class NotebookPage:
    """A notebook opened in JupyterLab or Notebook 7, driven the way a person would: menus, clicks, keys.

    Args:
      page: the Playwright page.
      server: the server the page talks to.

    Attributes:
      page_errors: uncaught errors thrown by the page's scripts so far.
    """

    def __init__(self, page: Page, server: LabServer) -> None:
        self.page = page
        self.server = server
        self.page_errors: list[str] = []  # uncaught errors in the page's scripts
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def unexpected_page_errors(self) -> list[str]:
        """The page errors so far, less those the frontend throws on its own (``known_page_errors``)."""
        known = self.server.frontend.known_page_errors
        return [e for e in self.page_errors if not any(re.search(pattern, e) for pattern in known)]

    def light_theme(self) -> bool:
        """True when the page shows a light theme (JupyterLab Light, the default)."""
        return self.page.evaluate("() => document.body.dataset.jpThemeLight") == "true"

    @property
    def cells(self) -> Locator:
        """Every cell of the open notebook, in order."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

    def cell(self, index: int) -> Locator:
        """The cell at ``index`` (markdown cells count too, as in the .ipynb file)."""
        return self.cells.nth(index)

    def outputs(self, index: int) -> Locator:
        """The output items of the cell at ``index``."""
        return self.cell(index).locator(".jp-OutputArea-output")

    def open(self, name: str, timeout: float = 120) -> None:
        """Open ``name`` from the server's root and wait until its kernel is connected and idle."""
        from playwright.sync_api import expect

        self.page.goto(f"{self.server.url}{self.server.frontend.tree}/{name}", wait_until="domcontentloaded")
        expect(self.cells.first).to_be_visible(timeout=timeout * 1000)
        self.server.wait_kernel_ready(timeout)
        expect(self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
            1, timeout=timeout * 1000
        )

    def menu(self, *path: str) -> None:
        """Click through the menu bar, e.g. ``menu("Run", "Run All Cells")``."""
        top, *items = path
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
        for item in items:
            entry = self.page.locator(
                ".lm-Menu:visible .lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")
            )
            entry.hover()
            entry.click()

    def run_all(self) -> None:
        """Run > Run All Cells."""
        self.menu("Run", "Run All Cells")

    def wait_executed(self, timeout: float = 300) -> None:
        """Wait until every code cell shows an execution count, or a run stopped at an error.

        Run All stops at the first error and puts the queued cells back to ``[ ]``; the
        caller's checks then say which cell failed, instead of this wait timing out.
        """
        self.page.wait_for_function(
            """() => {
                const panel = '.jp-NotebookPanel:not(.lm-mod-hidden) ';
                const prompts = [...document.querySelectorAll(panel + '.jp-CodeCell .jp-InputPrompt')];
                if (!prompts.length || prompts.some(p => p.textContent.includes('*'))) return false;
                const errors = document.querySelectorAll(
                    panel + '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
                return errors.length > 0 || prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
            }""",
            polling=250,
            timeout=timeout * 1000,
        )
        wait_until(
            lambda: (kernels := self.server.kernels_or_none()) and all(k["execution_state"] == "idle" for k in kernels),
            timeout,
            "the kernel to finish",
        )

    def add_cell_and_run(self, source: str) -> int:
        """Add a code cell at the end, type ``source``, run it with Shift+Enter; return its index."""
        count = self.cells.count()
        last = self.cell(count - 1)
        last.locator(".jp-InputPrompt").click()  # select the cell, in command mode
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("b")  # a new cell below, in edit mode
        new = self.cell(count)
        new.locator(".cm-content").click()
        self.page.keyboard.insert_text(source)
        self.page.keyboard.press("Shift+Enter")
        from playwright.sync_api import expect

        expect(new.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"), timeout=60_000)
        return count

    def set_theme(self, name: str) -> None:
        """Settings > Theme > ``name``, then wait for the page to take it."""
        self.menu("Settings", "Theme", name)
        light = "false" if "Dark" in name else "true"
        self.page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)

    def screenshot(self, target: Locator | None, name: str) -> Path:
        """Save a PNG of ``target`` (the whole page when None) as ``test-artifacts/browser-<frontend>-<name>.png``."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"browser-{self.server.frontend.name}-{name}.png"
        if target is None:
            self.page.screenshot(path=str(path))
        else:
            target.scroll_into_view_if_needed()
            target.screenshot(path=str(path))
        print(f"screenshot: {path}")
        return path

    def wait_settled(self, target: Locator, quiet: float = 1.5, timeout: float = 20) -> None:
        """Wait until nothing in ``target`` changed for ``quiet`` seconds and every image in it is drawn.

        Half a second after a run the panel sends its still picture (``PUBLISH_DELAY``), and the
        frontend then draws the widget view afresh: a picture taken before that may catch it
        half drawn.
        """
        self.page.wait_for_function(
            """([el, quiet]) => {
                if (!el.jgmChanged) {
                    el.jgmChanged = performance.now();
                    new MutationObserver(() => { el.jgmChanged = performance.now(); }).observe(
                        el, {subtree: true, childList: true, attributes: true, characterData: true});
                }
                const drawn = [...el.querySelectorAll('img')].every(img => img.complete && img.naturalWidth > 0);
                return drawn && performance.now() - el.jgmChanged > quiet * 1000;
            }""",
            arg=[target.element_handle(), quiet],
            polling=100,
            timeout=timeout * 1000,
        )

    def picture(self, target: Locator, name: str) -> Path | None:
        """Save ``target`` as ``docs/<name>.png``, the README's picture, under ``JGM_PICTURES=1``.

        Only from JupyterLab in its light theme, what the README shows; any other run, or one
        without the variable, leaves ``docs/`` alone and returns None.
        """
        if not PICTURES or self.server.frontend.name != "lab" or not self.light_theme():
            return None
        target.scroll_into_view_if_needed()
        self.page.mouse.move(0, 0)  # no hover highlight on the button clicked last
        self.wait_settled(target)
        DOCS.mkdir(exist_ok=True)
        path = DOCS / f"{name}.png"
        target.screenshot(path=str(path), animations="disabled", caret="hide")
        print(f"picture: {path}")
        return path


def notebook_cells(path: Path) -> list[dict[str, Any]]:
    """The cells of an .ipynb file, with ``source`` joined into one string."""
    cells = json.loads(path.read_text())["cells"]
    return [{**cell, "source": "".join(cell["source"])} for cell in cells]


def numbers(text: str) -> list[float]:
    """Every decimal number in ``text``, in order."""
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]

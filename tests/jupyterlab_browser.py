"""Drive notebooks in a real JupyterLab through headless Chromium.

:class:`LabServer` runs JupyterLab on 127.0.0.1 with a token, in settings,
runtime and workspace folders of its own, so that no user configuration
applies. :class:`LabNotebook` opens one notebook in a Playwright page and
runs it the way a student would. It waits until the kernel is connected and
idle, runs all cells and waits until the outputs stop changing. Then it
changes a widget and watches the outputs change.

JupyterLab is started with ``--LabApp.expose_app_in_browser=True``, so that
the page can read the notebook model (execution counts, error outputs) and
the kernel status through ``window.jupyterapp`` instead of guessing them from
the DOM.
"""

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")

# Flags for Debian's Chromium as root on a machine whose only network is
# loopback: no sandbox (root), no GPU, and no background requests to Google's
# services, which would fail and slow the start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# JupyterLab user settings: every cell stays in the DOM (the default
# "contentVisibility" windowing hides offscreen cells from some queries), no
# autosave, and no requests for news or updates.
LAB_USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none"
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

# Interactive controls of ipywidgets 8 as JupyterLab renders them.
WIDGET_CONTROLS = {
    "dropdown": ".widget-dropdown select",
    "slider": ".widget-slider .noUi-handle",
    "toggle_buttons": ".widget-toggle-buttons button",
    "radio_buttons": ".widget-radio-box input[type=radio]",
    "checkbox": ".widget-checkbox input[type=checkbox]",
    "button": "button.widget-button",
}


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Text that JupyterLab shows while a widget view waits for its model.
WIDGET_LOADING = "Loading widget..."

# Text that JupyterLab shows for a Python traceback or a widget that failed.
SHOWN_ERROR_MARKERS = ["Traceback (most recent call last)", "Error displaying widget"]


class LabServer:
    """A JupyterLab server on 127.0.0.1, started and stopped by the caller.

    Parameters
    ----------
    root_dir : Path
        Folder that JupyterLab serves; notebooks are opened relative to it.
    state_dir : Path
        Empty folder for JupyterLab's settings, workspaces, runtime files and
        its log (``jupyterlab.log``).
    python : str, default=sys.executable
        Python whose JupyterLab runs; kernels use the same Python.
    """

    def __init__(self, root_dir, state_dir, python=sys.executable):
        self.root_dir = Path(root_dir)
        self.state_dir = Path(state_dir)
        self.python = python
        self.token = secrets.token_hex(16)
        self.port = None
        self.process = None
        self.log_path = self.state_dir / "jupyterlab.log"

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path):
        """Return the address of ``path`` on the server, with the token."""
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def _write_user_settings(self):
        settings_dir = self.state_dir / "user-settings"
        for name, values in LAB_USER_SETTINGS.items():
            path = settings_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        return settings_dir

    def start(self, timeout=60.0):
        """Start the server and wait until its REST API responds."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        settings_dir = self._write_user_settings()
        env = dict(os.environ)
        for variable, folder in [
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_DATA_DIR", "data"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("IPYTHONDIR", "ipython"),
        ]:
            env[variable] = str(self.state_dir / folder)
        self.port = free_port()
        command = [
            self.python,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={settings_dir}",
            f"--LabApp.workspaces_dir={self.state_dir / 'workspaces'}",
        ]
        # A session of its own lets stop() end the server and its kernels
        # together by signalling the process group.
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.root_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_ready(timeout)

    def _wait_until_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with code {self.process.returncode} "
                    f"before it was ready; its log is {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            try:
                self.api("GET", "api/status")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.25)
        raise TimeoutError(
            f"JupyterLab did not answer on port {self.port} within {timeout:g} s; "
            f"its log is {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, n_lines=40):
        """Return the last ``n_lines`` lines of the server log."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n_lines:])

    def api(self, method, path, timeout=10.0):
        """Send one REST request with the token and return the decoded JSON."""
        request = urllib.request.Request(
            f"{self.base_url}/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self):
        """Shut down every running kernel; the server keeps them otherwise."""
        if self.process is None or self.process.poll() is not None:
            return
        for kernel in self.api("GET", "api/kernels"):
            try:
                self.api("DELETE", f"api/kernels/{kernel['id']}", timeout=30.0)
            except urllib.error.HTTPError as error:
                if error.code != 404:  # 404: the kernel had already stopped
                    raise

    def stop(self, timeout=15.0):
        """Stop the server and everything it started (kernels included)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.shutdown_kernels()
        except (OSError, urllib.error.URLError):
            pass  # The process group is signalled below in any case.
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout)
        try:
            os.killpg(group, signal.SIGKILL)  # kernels that outlived the server
        except ProcessLookupError:
            pass


def launch_chromium(playwright):
    """Launch Debian's headless Chromium with flags that work as root."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


@dataclass
class OutputSnapshot:
    """What the notebook's output areas show: text and a digest per image."""

    texts: list = field(default_factory=list)
    image_digests: list = field(default_factory=list)

    def differences(self, other):
        """Return a short description of what differs from ``other``."""
        changes = []
        n_text = sum(a != b for a, b in zip(self.texts, other.texts))
        n_text += abs(len(self.texts) - len(other.texts))
        if n_text:
            changes.append(f"{n_text} output area text(s) changed")
        if self.image_digests != other.image_digests:
            changes.append("images changed")
        return changes


# JavaScript helpers evaluated in the page. Each reads the current notebook
# panel from the JupyterLab application object.
_JS_PANEL = """
() => {
  const app = window.jupyterapp;
  if (!app) { return null; }
  const panel = app.shell.currentWidget;
  if (!panel || !panel.sessionContext || !panel.content) { return null; }
  return panel;
}
"""

JS_KERNEL_STATE = f"""
() => {{
  const panel = ({_JS_PANEL})();
  if (!panel) {{ return {{ready: false, reason: "no notebook panel"}}; }}
  const session = panel.sessionContext.session;
  const kernel = session ? session.kernel : null;
  if (!kernel) {{ return {{ready: false, reason: "no kernel"}}; }}
  return {{
    ready: kernel.connectionStatus === "connected" && kernel.status === "idle",
    reason: `connection ${{kernel.connectionStatus}}, status ${{kernel.status}}`,
  }};
}}
"""

# "Run All" resolves once every cell has run or was aborted after an error.
# The page stores the outcome in a global that the test polls.
JS_RUN_ALL = """
() => {
  const app = window.jupyterapp;
  window.influenceKitRunAll = "running";
  app.commands.execute("notebook:clear-all-cell-outputs")
    .then(() => app.commands.execute("notebook:run-all-cells"))
    .then(
      () => { window.influenceKitRunAll = "done"; },
      (error) => { window.influenceKitRunAll = `failed: ${error}`; },
    );
}
"""

JS_CELL_STATE = f"""
() => {{
  const panel = ({_JS_PANEL})();
  const cells = panel.content.model.cells;
  const result = [];
  for (let i = 0; i < cells.length; i++) {{
    const cell = cells.get(i);
    if (cell.type !== "code") {{ continue; }}
    const area = panel.content.widgets[i].node.querySelector(".jp-Cell-outputArea");
    result.push({{
      index: i,
      executionCount: cell.executionCount,
      errors: cell.outputs.toJSON()
        .filter((output) => output.output_type === "error")
        .map((output) => `${{output.ename}}: ${{output.evalue}}`),
      shownText: area ? area.textContent : "",
    }});
  }}
  const pending = Array.from(document.querySelectorAll(
    ".jp-Notebook .jp-InputArea-prompt")).filter(
      (prompt) => prompt.textContent.includes("*")).length;
  return {{cells: result, pending: pending}};
}}
"""

# The text of each output area without the readouts of sliders, which the
# browser updates by itself: a change must come from the kernel to count.
JS_OUTPUTS = """
() => Array.from(document.querySelectorAll(".jp-Notebook .jp-Cell-outputArea"))
  .map((area) => {
    const copy = area.cloneNode(true);
    copy.querySelectorAll(".widget-readout").forEach((node) => node.remove());
    return {
      text: copy.textContent,
      images: Array.from(area.querySelectorAll("img")).map((img) => img.src),
    };
  })
"""


class LabNotebook:
    """One notebook open in a Playwright page of a running :class:`LabServer`.

    Parameters
    ----------
    page : playwright.sync_api.Page
        A fresh page; its console errors are collected from now on.
    server : LabServer
        The server that serves the notebook.
    relative_path : str
        Path of the notebook relative to the server's ``root_dir``.
    """

    def __init__(self, page, server, relative_path):
        self.page = page
        self.server = server
        self.relative_path = relative_path
        self.console_errors = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message):
        if message.type == "error":
            location = message.location or {}
            self.console_errors.append(
                f"{message.text} ({location.get('url', '?')}:"
                f"{location.get('lineNumber', '?')})"
            )

    def _on_page_error(self, error):
        self.console_errors.append(f"uncaught exception: {error}")

    def open(self, timeout=90.0):
        """Open the notebook and wait until its kernel is connected and idle."""
        # A workspace of its own per notebook: the server stores workspaces,
        # and a shared one would reopen the notebooks of earlier pages.
        workspace = "test-" + Path(self.relative_path).stem
        self.page.goto(
            self.server.url(f"lab/workspaces/{workspace}/tree/{self.relative_path}"),
            timeout=timeout * 1000,
        )
        self.page.wait_for_selector(
            ".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout * 1000
        )
        self.wait_for_kernel_idle(timeout)

    def wait_for_kernel_idle(self, timeout):
        """Wait until the kernel is connected and idle.

        The notebook's execution indicator reads idle before the kernel is
        connected, and "Run All" issued then does nothing. The kernel object
        of the session reports the real state.
        """
        deadline = time.monotonic() + timeout
        state = {"reason": "not checked"}
        while time.monotonic() < deadline:
            self._accept_kernel_dialog()
            state = self.page.evaluate(JS_KERNEL_STATE)
            if state["ready"]:
                return
            time.sleep(0.25)
        raise TimeoutError(
            f"{self.relative_path}: kernel not connected and idle after "
            f"{timeout:g} s ({state['reason']}); server log:\n"
            f"{self.server.log_tail()}"
        )

    def _accept_kernel_dialog(self):
        # A notebook without kernel metadata opens a "Select Kernel" dialog;
        # its default button picks the default Python kernel.
        dialog_button = self.page.locator(".jp-Dialog .jp-mod-accept")
        if dialog_button.count():
            dialog_button.first.click()

    def run_all(self, timeout):
        """Clear the stored outputs, run all cells, and wait until they ran.

        Returns
        -------
        list of int
            Indices of the code cells that did not run, because the kernel
            aborted the rest of the run after an error.
        """
        self.page.evaluate(JS_RUN_ALL)
        deadline = time.monotonic() + timeout
        status = "running"
        while time.monotonic() < deadline:
            status = self.page.evaluate("() => window.influenceKitRunAll")
            if status != "running":
                break
            time.sleep(0.5)
        if status != "done":
            raise TimeoutError(
                f"{self.relative_path}: Run All still {status} after {timeout:g} s"
            )
        self.wait_for_kernel_idle(timeout)
        state = self.page.evaluate(JS_CELL_STATE)
        return [
            cell["index"] for cell in state["cells"] if cell["executionCount"] is None
        ]

    def kernel_errors(self, expected_error_cells=()):
        """Return the errors shown by cells not expected to raise.

        Parameters
        ----------
        expected_error_cells : collection of int, default=()
            Indices (among all cells) of cells that are meant to raise.

        Returns
        -------
        list of str
            One ``"cell N: ..."`` entry per error output, and one per cell
            whose outputs show a traceback or a widget that failed to render.
            The second kind catches errors raised inside an Output widget, for
            example in a widget callback, which are not error outputs.
        """
        errors = []
        for cell in self.page.evaluate(JS_CELL_STATE)["cells"]:
            if cell["index"] in expected_error_cells:
                continue
            errors.extend(f"cell {cell['index']}: {error}" for error in cell["errors"])
            for marker in SHOWN_ERROR_MARKERS:
                if not cell["errors"] and marker in cell["shownText"]:
                    errors.append(f"cell {cell['index']}: the output shows {marker!r}")
        return errors

    def snapshot(self):
        """Return what the output areas show now."""
        areas = self.page.evaluate(JS_OUTPUTS)
        return OutputSnapshot(
            texts=[area["text"] for area in areas],
            image_digests=[
                [hashlib.sha256(src.encode()).hexdigest() for src in area["images"]]
                for area in areas
            ],
        )

    def kernel_idle(self):
        """Return True when the kernel is connected and idle right now."""
        return self.page.evaluate(JS_KERNEL_STATE)["ready"]

    def wait_until_settled(self, timeout, interval=1.0):
        """Wait until the notebook has finished reacting; return a snapshot.

        Settled means: every widget has rendered, and the kernel was idle at
        two snapshots taken ``interval`` seconds apart that agree. A widget
        callback keeps the kernel busy while it runs, so a message such as
        "Refitting..." that stays on screen during a long callback does not
        count as the final state.
        """
        deadline = time.monotonic() + timeout
        previous = None
        while time.monotonic() < deadline:
            idle = self.kernel_idle()
            current = self.snapshot()
            loading = any(WIDGET_LOADING in text for text in current.texts)
            if idle and not loading and current == previous:
                return current
            previous = current if idle and not loading else None
            time.sleep(interval)
        raise TimeoutError(
            f"{self.relative_path}: outputs or kernel still busy after {timeout:g} s"
        )

    def find_control(self, selector=None):
        """Return (kind, locator) of the widget control to change, or None.

        Parameters
        ----------
        selector : str, optional
            CSS selector of the control. By default, the first control in
            document order that matches one of :data:`WIDGET_CONTROLS`.

        Returns
        -------
        tuple of (str, playwright.sync_api.Locator) or None
            The kind is a key of :data:`WIDGET_CONTROLS`.
        """
        if selector is None:
            selector = ", ".join(WIDGET_CONTROLS.values())
        locator = self.page.locator(f".jp-Cell-outputArea :is({selector})")
        if not locator.count():
            return None
        control = locator.first
        kind = control.evaluate(
            "(element, table) => (Object.entries(table)"
            ".find(([kind, css]) => element.matches(css)) || [null])[0]",
            WIDGET_CONTROLS,
        )
        if kind is None:
            raise ValueError(
                f"{self.relative_path}: the element matching {selector!r} is not "
                f"a supported widget control; use a selector that matches one of "
                f"{sorted(WIDGET_CONTROLS.values())}"
            )
        return kind, control

    def change_control(self, kind, control):
        """Change one control the way a user would; return what was done."""
        control.scroll_into_view_if_needed()
        if kind == "dropdown":
            options = control.locator("option")
            values = [
                options.nth(i).get_attribute("value") for i in range(options.count())
            ]
            if len(values) < 2:
                raise AssertionError(
                    f"{self.relative_path}: the dropdown has fewer than two options"
                )
            labels = [options.nth(i).inner_text() for i in range(options.count())]
            index = (values.index(control.input_value()) + 1) % len(values)
            control.select_option(values[index])
            return f"chose {labels[index]!r} in a dropdown"
        if kind == "slider":
            value = float(control.get_attribute("aria-valuenow"))
            maximum = float(control.get_attribute("aria-valuemax"))
            key = "ArrowLeft" if value >= maximum else "ArrowRight"
            control.focus()
            control.press(key)
            return f"pressed {key} on a slider at {value:g}"
        if kind in {"toggle_buttons", "radio_buttons"}:
            container = control.locator(
                "xpath=ancestor::*[contains(@class, 'widget-toggle-buttons') or "
                "contains(@class, 'widget-radio-box')][1]"
            )
            choices = container.locator("button, input[type=radio]")
            for i in range(choices.count()):
                choice = choices.nth(i)
                selected = choice.evaluate(
                    "(e) => e.classList.contains('mod-active') || e.checked === true"
                )
                if not selected:
                    choice.click()
                    return f"selected choice {i} of {choices.count()}"
            raise AssertionError(f"{self.relative_path}: no unselected choice to pick")
        control.click()
        return f"clicked {kind} {control.inner_text().strip()!r}".rstrip()

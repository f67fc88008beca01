"""The shipped UI workflows in ComfyUI's real frontend, served by the test server, in headless Chromium.

Each workflow is loaded with the frontend's own `app.loadGraphData` (what dropping the file on the
canvas does), then queued with `app.queuePrompt`; the POST /prompt body is caught in the page and
compared with the workflow's API twin. Every ComfyUI version serves its own frontend package
(v0.33: 1.49.x, v0.3.64: 1.27.x), so running the tier on both versions tests both frontends.
Needs Debian's `chromium` and `chromium-driver` and the `selenium` package; skipped with one line
without them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from server import ComfyServer
from test_workflows import SHIPPED, api_without_meta, load_ui

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGE_TIMEOUT = 120

# Runs in the page: waits for the app and its node definitions, then records what queuing sends.
READY = """
const done = arguments[arguments.length - 1];
const started = Date.now();
(function poll() {
  const app = window.app, LiteGraph = window.LiteGraph;
  if (app && app.graph && LiteGraph && LiteGraph.registered_node_types["DreamMixInpaint"]) {
    window.__dreammix = {errors: [], prompts: []};
    window.addEventListener("error", e => window.__dreammix.errors.push(String(e.message)));
    window.addEventListener("unhandledrejection", e => window.__dreammix.errors.push(String(e.reason)));
    const fetch = window.fetch.bind(window);
    window.fetch = (resource, options) => {
      const url = typeof resource === "string" ? resource : resource.url;
      if (options && options.method === "POST" && url.endsWith("/prompt")) {
        window.__dreammix.prompts.push(JSON.parse(options.body));
        const reply = {prompt_id: "frontend-test", number: 0, node_errors: {}};
        return Promise.resolve(new Response(JSON.stringify(reply), {status: 200}));
      }
      return fetch(resource, options);
    };
    done({version: window.__COMFYUI_FRONTEND_VERSION__ || null});
  } else if (Date.now() - started > 100000) {
    done({error: "the frontend did not finish loading its node definitions"});
  } else {
    setTimeout(poll, 200);
  }
})();
"""

LOAD_AND_QUEUE = """
const [workflow, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const state = window.__dreammix;
  state.errors.length = 0;
  state.prompts.length = 0;
  try {
    await window.app.loadGraphData(workflow);
    const nodes = window.app.graph._nodes || window.app.graph.nodes;
    const missing = nodes.map(n => n.type).filter(t => !(t in window.LiteGraph.registered_node_types));
    await window.app.queuePrompt(0, 1);
    done({missing, errors: state.errors.slice(), prompts: state.prompts.slice()});
  } catch (error) {
    done({missing: [], errors: [String(error && error.stack || error)], prompts: []});
  }
})();
"""


@pytest.fixture(scope="module")
def browser(comfy_server: ComfyServer) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("frontend test skipped: the selenium package is not installed")
    if CHROMEDRIVER is None or CHROMIUM is None:
        pytest.skip("frontend test skipped: install Chromium and its driver (Debian: chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(PAGE_TIMEOUT)
    try:
        driver.get(comfy_server.url)
        ready = driver.execute_async_script(READY)
        assert "error" not in ready, ready["error"]
        yield driver
    finally:
        driver.quit()


def sent_graph(prompt: dict[str, Any]) -> dict[str, Any]:
    return {nid: {"class_type": node["class_type"], "inputs": node["inputs"]} for nid, node in prompt.items()}


@pytest.mark.parametrize("name", SHIPPED)
def test_frontend_loads_and_queues_the_api_twin(name: str, browser: Any) -> None:
    result = browser.execute_async_script(LOAD_AND_QUEUE, load_ui(name))
    assert result["missing"] == [], f"the frontend lacks node types {result['missing']}"
    assert result["errors"] == [], "\n".join(result["errors"])
    (body,) = result["prompts"]
    assert sent_graph(body["prompt"]) == api_without_meta(name), json.dumps(body["prompt"], indent=1)[:3000]


def test_frontend_checks_catch_a_missing_node_and_a_changed_widget(browser: Any) -> None:
    """The same checks fail for an unknown node type and for a widget value that differs from the twin."""
    workflow = load_ui("dreammix_inpaint")
    inpaint = next(node for node in workflow["nodes"] if node["type"] == "DreamMixInpaint")
    inpaint["widgets_values"][0] += 1  # the seed
    result = browser.execute_async_script(LOAD_AND_QUEUE, workflow)
    (body,) = result["prompts"]
    sent = sent_graph(body["prompt"])
    assert sent != api_without_meta("dreammix_inpaint")
    assert sent[str(inpaint["id"])]["inputs"]["seed"] == inpaint["widgets_values"][0]
    workflow["nodes"][0]["type"] = "NoSuchNodeType"
    assert browser.execute_async_script(LOAD_AND_QUEUE, workflow)["missing"] == ["NoSuchNodeType"]

// The host side of MCP Apps for the player test, with the official AppBridge (see host.html).
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";

const HOST = { name: "musicgpt-mcp test host", version: "1.0.0" };

/**
 * Show the view for one tool call, the way a host does: connect the bridge, load the view's HTML
 * (served by the test with the CSP its resource declares), then send the tool's input and result.
 */
window.renderView = async ({ viewUrl, toolInput, toolResult, hostContext, capabilities }) => {
  const iframe = document.getElementById("view");
  document.body.classList.toggle("dark", hostContext.theme === "dark");
  // What this host offers beyond tools and resources (downloadFile, updateModelContext, message), per test.
  const offered = { serverTools: {}, serverResources: {}, logging: {}, ...(capabilities || {}) };
  const bridge = new AppBridge(null, HOST, offered, { hostContext });
  // With no MCP client of its own, the bridge hands the view's requests to us; we hand them to the test.
  bridge.oncalltool = (params) => window.mcpRequest("tools/call", params);
  bridge.onreadresource = (params) => window.mcpRequest("resources/read", params);
  // The host's own requests: the test records them (and answers as a host that did what was asked).
  if (offered.downloadFile) bridge.ondownloadfile = (params) => window.mcpRequest("ui/download-file", params);
  if (offered.updateModelContext) {
    bridge.onupdatemodelcontext = (params) => window.mcpRequest("ui/update-model-context", params);
  }
  if (offered.message) bridge.onmessage = (params) => window.mcpRequest("ui/message", params);
  bridge.onloggingmessage = (params) => console.log("[view log]", JSON.stringify(params));
  bridge.onsizechange = ({ height }) => { if (height) iframe.style.height = `${height}px`; };
  const initialized = new Promise((resolve) => { bridge.oninitialized = resolve; });
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  iframe.src = viewUrl;
  await initialized;
  await bridge.sendToolInput({ arguments: toolInput });
  await bridge.sendToolResult(toolResult);
  window.bridge = bridge;
  window.hostContext = hostContext;
};

window.setTheme = (theme) => {
  document.body.classList.toggle("dark", theme === "dark");
  window.hostContext = { ...window.hostContext, theme };
  window.bridge.setHostContext(window.hostContext);
};

window.hostReady = true;

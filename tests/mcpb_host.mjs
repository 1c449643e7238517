// What an MCPB host makes of a bundle's mcp_config, from the pinned MCPB library itself
// (@anthropic-ai/mcpb, getMcpConfigForManifest): ${__dirname}, ${HOME} and friends, and
// ${user_config.*} from the user's settings and the manifest's defaults, substituted as the host does.
// Reads {"manifest", "extensionPath", "userConfig", "systemDirs"} as JSON on stdin; writes the resulting
// {"command", "args", "env"} as JSON on stdout (null when a required setting is missing).
import { getMcpConfigForManifest } from "@anthropic-ai/mcpb/node";
import { sep } from "node:path";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { manifest, extensionPath, userConfig, systemDirs } = JSON.parse(input);
const config = await getMcpConfigForManifest({
  manifest,
  extensionPath,
  systemDirs,
  userConfig,
  pathSeparator: sep,
});
process.stdout.write(JSON.stringify(config ?? null));

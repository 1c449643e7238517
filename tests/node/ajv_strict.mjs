// Compile JSON Schemas the way strict Node-based MCP hosts do: Ajv 8 for JSON Schema 2020-12 with
// `strict: true`, plus ajv-formats. tests/test_strict_schemas.py runs it with the pinned Node tools
// (`npm ci` at the repository root).
//
// Input (stdin): a JSON array of {"name": "...", "schema": {...}}.
// Output (stdout): a JSON array of {"name": "...", "errors": ["..."], "warnings": ["..."]}, one per
// input, in order. A schema passes when both lists are empty. Exit code 0 unless the input is unreadable.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const items = JSON.parse(readFileSync(0, "utf8"));
const report = items.map(({ name, schema }) => {
  const warnings = [];
  const log = (...args) => warnings.push(args.map(String).join(" "));
  // One validator per schema, so one schema's $id or failure cannot affect another's.
  const ajv = new Ajv2020({ strict: true, allErrors: true, logger: { log, warn: log, error: log } });
  addFormats(ajv);
  const errors = [];
  try {
    ajv.compile(schema);
  } catch (error) {
    errors.push(error instanceof Error ? error.message : String(error));
  }
  return { name, errors, warnings };
});
process.stdout.write(JSON.stringify(report));

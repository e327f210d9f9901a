#!/usr/bin/env node
// Sign / verify webhook bodies with the senders' own Node libraries, for tests/interop/run.py.
//
// stdin:  one JSON object (or an array of them)
//   {"sender": "github" | "shopify", "op": "sign" | "verify",
//    "secret": "...", "body_b64": "...", "signature": "...",   // signature: verify only
//    "headers": {"Name": "value", ...}}                          // shopify verify only (optional)
// stdout: one JSON object per request (an array for an array), e.g.
//   {"ok": true, "signature": "sha256=..."}                     // sign
//   {"ok": true, "valid": false, "reason": "invalid_hmac"}      // verify
//   {"ok": false, "error": "..."}                               // the library threw / bad request
//
// Libraries:
//   github  -> @octokit/webhooks-methods: sign(secret, payload) / verify(secret, payload, signature)
//   shopify -> @shopify/shopify-api:
//              sign:   createSHA256HMAC(secret, body, HashFormat.Base64) from "@shopify/shopify-api/runtime",
//                      the helper the library's own webhook validator computes its local HMAC with
//                      (Shopify's libraries only receive webhooks, so they have no "sign a webhook" API);
//              verify: shopifyApi({...}).webhooks.validate({rawBody, rawRequest}) with the web-api adapter,
//                      i.e. the full public webhook validation (HMAC + required Shopify headers).
//
// The packages are loaded from $INTEROP_NODE_DIR/node_modules (default: this file's directory), so
// the harness can run this file from the repo while the packages were installed (npm ci) elsewhere.
// Nothing secret is ever printed.

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = path.resolve(process.env.INTEROP_NODE_DIR || here);
const CONDITIONS = ["node", "import", "default"];

// Resolves "<package>[/subpath]" inside nodeDir/node_modules through the package's "exports" map
// (ESM conditions), the way Node itself would from a module placed in nodeDir.
function pickTarget(target) {
  if (typeof target === "string") return target;
  if (Array.isArray(target)) {
    for (const t of target) {
      const r = pickTarget(t);
      if (r) return r;
    }
    return null;
  }
  if (target && typeof target === "object") {
    for (const [cond, value] of Object.entries(target)) {
      if (CONDITIONS.includes(cond)) {
        const r = pickTarget(value);
        if (r) return r;
      }
    }
  }
  return null;
}

function resolveSpecifier(spec) {
  const parts = spec.split("/");
  const nameLen = spec.startsWith("@") ? 2 : 1;
  const name = parts.slice(0, nameLen).join("/");
  const sub = parts.length > nameLen ? "./" + parts.slice(nameLen).join("/") : ".";
  const pkgDir = path.join(nodeDir, "node_modules", name);
  let pj;
  try {
    pj = JSON.parse(readFileSync(path.join(pkgDir, "package.json"), "utf8"));
  } catch (e) {
    throw new Error(`package ${name} not found under ${path.join(nodeDir, "node_modules")} (run npm ci there, or set INTEROP_NODE_DIR)`);
  }
  let rel = null;
  const exp = pj.exports;
  if (exp !== undefined) {
    const map = typeof exp === "string" || Array.isArray(exp) || !Object.keys(exp).some((k) => k.startsWith("."))
      ? { ".": exp }
      : exp;
    if (map[sub] !== undefined) {
      rel = pickTarget(map[sub]);
    } else {
      for (const [key, value] of Object.entries(map)) {
        const star = key.indexOf("*");
        if (star < 0) continue;
        const pre = key.slice(0, star);
        const post = key.slice(star + 1);
        if (sub.startsWith(pre) && sub.endsWith(post) && sub.length >= pre.length + post.length) {
          const middle = sub.slice(pre.length, sub.length - post.length);
          const t = pickTarget(value);
          if (t) rel = t.split("*").join(middle);
          break;
        }
      }
    }
  } else if (sub === ".") {
    rel = pj.module || pj.main || "index.js";
  } else {
    rel = sub;
  }
  if (!rel) throw new Error(`cannot resolve ${spec} in ${pkgDir}`);
  return pathToFileURL(path.join(pkgDir, rel)).href;
}

const load = (spec) => import(resolveSpecifier(spec));

let octokit = null;
async function github(req, body) {
  octokit ??= await load("@octokit/webhooks-methods");
  // The webhooks-methods API takes the payload as a string (the raw body, UTF-8).
  const payload = body.toString("utf8");
  if (req.op === "sign") return { ok: true, signature: await octokit.sign(req.secret, payload) };
  if (req.op === "verify") {
    return { ok: true, valid: Boolean(await octokit.verify(req.secret, payload, req.signature ?? "")) };
  }
  throw new Error(`unknown op ${req.op}`);
}

let shopifyMods = null;
async function shopify(req, body) {
  if (!shopifyMods) {
    await load("@shopify/shopify-api/adapters/web-api");
    const lib = await load("@shopify/shopify-api");
    const runtime = await load("@shopify/shopify-api/runtime");
    shopifyMods = { lib, runtime };
  }
  const { lib, runtime } = shopifyMods;
  const rawBody = body.toString("utf8");
  if (req.op === "sign") {
    return { ok: true, signature: await runtime.createSHA256HMAC(req.secret, rawBody, runtime.HashFormat.Base64) };
  }
  if (req.op === "verify") {
    const api = lib.shopifyApi({
      apiKey: "hookrelay-interop",
      apiSecretKey: req.secret,
      hostName: "localhost",
      apiVersion: lib.ApiVersion.January26 ?? lib.LATEST_API_VERSION,
      isEmbeddedApp: false,
      logger: { level: lib.LogSeverity.Error, log: async (_sev, msg) => process.stderr.write(`[shopify] ${msg}\n`) },
    });
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers || {})) headers.set(k, String(v));
    const hasHmac = headers.has(lib.ShopifyHeader.Hmac) || headers.has(lib.ShopifyEventsHeader.Hmac);
    if (!hasHmac && req.signature !== undefined) headers.set(lib.ShopifyHeader.Hmac, req.signature);
    const rawRequest = new Request("http://localhost/webhooks", { method: "POST", headers, body: rawBody });
    const result = await api.webhooks.validate({ rawBody, rawRequest });
    const out = { ok: true, valid: Boolean(result.valid) };
    if (!result.valid) {
      out.reason = result.reason;
      if (result.missingHeaders) out.missing_headers = result.missingHeaders;
    } else {
      out.webhook_type = result.webhookType;
    }
    return out;
  }
  throw new Error(`unknown op ${req.op}`);
}

async function handle(req) {
  try {
    if (!req || typeof req !== "object") throw new Error("request must be a JSON object");
    const body = Buffer.from(req.body_b64 ?? "", "base64");
    if (req.sender === "github") return await github(req, body);
    if (req.sender === "shopify") return await shopify(req, body);
    throw new Error(`unknown sender ${req.sender}`);
  } catch (e) {
    // Library errors only; never echo the request (it carries the secret).
    return { ok: false, error: `${e?.name ?? "Error"}: ${e?.message ?? e}` };
  }
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let input;
try {
  input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: `bad JSON on stdin: ${e.message}` }) + "\n");
  process.exit(2);
}
const output = Array.isArray(input) ? await Promise.all(input.map(handle)) : await handle(input);
process.stdout.write(JSON.stringify(output) + "\n");

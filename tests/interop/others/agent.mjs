// Tiny agents on two A2A server implementations independent of
// @a2a-js/sdk, for routerd's interop test (no LLM):
//   node others.mjs volt PORT      VoltAgent's A2AServer (@voltagent/a2a-server), 0.3,
//                                  send (answered only when done) and stream
//   node others.mjs reactive PORT  @reactive-agents/a2a's JSON-RPC handler, 0.3, send + poll
// The same scripted behaviour for both, by the message text:
//   slow <ms>   answers "slow done" after ms
//   fail        the work throws ("cannot do that")
//   else        "echo: <text>"
// Each message/send or message/stream runs the work (neither framework
// deduplicates), so the HTTP glue counts executions per messageId and logs
// "exec <messageId> <n>"; the run script checks that no n exceeds 1.
import http from "node:http";

// Only loopback traffic: VoltAgent's core refreshes a model registry over
// the network when fetch exists; these agents need no fetch at all.
delete globalThis.fetch;

const [mode, portArg] = process.argv.slice(2);
const port = Number(portArg);
const execs = new Map();

function countExec(body) {
  if (body?.method !== "message/send" && body?.method !== "message/stream") return;
  const id = body?.params?.message?.messageId ?? "?";
  const n = (execs.get(id) ?? 0) + 1;
  execs.set(id, n);
  console.log(`exec ${id} ${n}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function work(text) {
  const slow = /^slow (\d+)/.exec(text);
  if (slow) {
    await sleep(Number(slow[1]));
    return "slow done";
  }
  if (text.startsWith("fail")) throw new Error("cannot do that");
  return "echo: " + text;
}

async function readBody(req) {
  let s = "";
  for await (const c of req) s += c;
  return s;
}

function json(res, status, obj) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(obj));
}

async function volt() {
  const { A2AServer } = await import("@voltagent/a2a-server");
  const agent = {
    id: "echo",
    name: "echo",
    purpose: "echo agent for routerd's interop test",
    async generateText(content) {
      return { text: await work(content) };
    },
    async streamText(content) {
      const text = await work(content);
      const half = Math.floor(text.length / 2);
      return {
        text: Promise.resolve(text),
        textStream: (async function* () {
          yield text.slice(0, half);
          await sleep(20);
          yield text.slice(half);
        })(),
        fullStream: (async function* () {
          yield { type: "text-delta", text: text.slice(0, half), textDelta: text.slice(0, half) };
          yield { type: "text-delta", text: text.slice(half), textDelta: text.slice(half) };
        })(),
      };
    },
  };
  const server = new A2AServer({ name: "interop", version: "1.0.0", agents: { echo: agent } });
  server.initialize({ agentRegistry: { getAllAgents: () => [] } });
  return async (req, res, url) => {
    if (req.method === "GET" && url.pathname.startsWith("/.well-known/"))
      return json(res, 200, server.getAgentCard("echo", { requestUrl: url.toString() }));
    if (req.method !== "POST" || url.pathname !== "/a2a/echo") return json(res, 404, {});
    const body = JSON.parse(await readBody(req));
    countExec(body);
    const r = await server.handleRequest("echo", body, { requestUrl: url.toString() });
    if (r && r.kind === "stream") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      for await (const ev of r.stream) res.write(`data: ${JSON.stringify(ev)}\n\n`);
      return res.end();
    }
    return json(res, 200, r);
  };
}

async function reactive() {
  const { Effect, Layer } = await import("effect");
  const a2a = await import("@reactive-agents/a2a");
  const card = {
    name: "echo",
    description: "echo agent for routerd's interop test",
    url: `http://127.0.0.1:${port}/`,
    version: "1.0.0",
    protocolVersion: "0.3.0",
    preferredTransport: "JSONRPC",
    capabilities: { streaming: false },
    defaultInputModes: ["text"],
    defaultOutputModes: ["text"],
    skills: [],
  };
  const executor = (text) => Effect.tryPromise({ try: () => work(text), catch: (e) => e });
  const layer = a2a.createA2AHttpServer(port, executor).pipe(Layer.provide(a2a.createA2AServer(card)));
  const srv = await Effect.runPromise(Effect.provide(a2a.A2AHttpServer, layer));
  return async (req, res, url) => {
    if (req.method === "GET" && url.pathname.startsWith("/.well-known/")) return json(res, 200, card);
    if (req.method !== "POST") return json(res, 404, {});
    const body = JSON.parse(await readBody(req));
    countExec(body);
    const out = await Effect.runPromise(
      srv.handleJsonRpc(body).pipe(
        Effect.catchAll((e) =>
          Effect.succeed({ jsonrpc: "2.0", id: body.id, error: { code: -32000, message: String(e.message ?? e) } }),
        ),
      ),
    );
    return json(res, 200, out);
  };
}

const handler = mode === "volt" ? await volt() : await reactive();
http
  .createServer((req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    handler(req, res, url).catch((e) => {
      console.log("error", e?.stack ?? e);
      if (!res.headersSent) json(res, 500, { error: String(e) });
      else res.end();
    });
  })
  .listen(port, "127.0.0.1", () => console.log(`listening ${mode} ${port}`));

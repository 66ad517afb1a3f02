// A calling agent on the official @a2a-js/sdk client, for routerd's inbound
// A2A server (docs/inbound.md). It asks a person a question through routerd
// and reports what it saw, one JSON object a line on stdout, for the C test
// tests/integration/test_inbound_e2e.c to assert on.
//
// Usage: node inbound_client.mjs COMMAND --url BASE [options]
//   card                    GET the card (both paths) and resolve it with the SDK
//   ask                     send (blocking unless --no-wait), then poll GetTask
//                           until a terminal state (--no-poll: stop after the send)
//   stream                  send with streaming; every event, until the stream ends
//   subscribe --task ID     re-attach to a task's stream (SubscribeToTask /
//                           tasks/resubscribe); every event, until it ends
//   get --task ID           one GetTask
//   wait --task ID          poll GetTask until a terminal state
//   cancel --task ID        CancelTask
// Options:
//   --dialect 1.0|0.3       which protocol the SDK speaks (default 1.0). 1.0: the
//                           SDK's ClientFactory from the card; 0.3: the SDK's
//                           LegacyJsonRpcTransport (its v0.3 compat client) at the
//                           card's 0.3 url
//   --skill NAME            message.metadata.skill (the human); absent = none
//   --text TEXT             the question (default "Is the deploy ok?")
//   --message-id ID         messageId (default a fresh UUID); reuse it to retry
//   --task-id ID            message.taskId (a continuation; refused by routerd
//                           for a task not the caller's)
//   --choices JSON          message.metadata.choices, e.g. '["Yes","No"]'
//   --notify                message.metadata.expect_answer = false
//   --no-wait               non-blocking send (1.0 returnImmediately, 0.3 blocking=false)
//   --timeout-ms N          give up polling / streaming after N ms (default 30000)
//   --poll-ms N             GetTask interval (default 100)
//   --auth bearer|apikey|none  how A2A_TOKEN is sent (default bearer)
// Environment: A2A_TOKEN, the caller's token.
//
// Lines printed ("event" tells them apart):
//   {"event":"card", "card":<raw 1.0-path card>, "legacy":<raw agent.json>,
//    "skills":[ids as the SDK parsed them], "interfaces":[...]}
//   {"event":"sent", "task":T} | {"event":"message", "text":...}
//   {"event":"state", "task":T}           each state change seen while polling
//   {"event":"stream", "kind":"task"|"status"|"artifact"|"message", "state":...,
//    "text":..., "task":T?}
//   {"event":"final", "task":T}           the last task state known
//   {"event":"error", "method":..., "http":N, "code":N|null, "message":...,
//    "wwwAuthenticate":...}
//   {"event":"wire", "calls":[{"method","version","meta","http","contentType",
//    "wwwAuthenticate","retryAfter","states":[...],"finals":[...],"kinds":[...],"n"}]}
//                                         what went over the wire (always printed
//                                         last; "meta" = message.metadata sent, "n" =
//                                         how many identical calls in a row)
// T = {id, contextId, state, statusText, statusRole, answer, artifacts,
//      answeredAt, history:[{role,text}]}, state spelled as in 0.3
// ("input-required"), whatever the dialect (the wire spelling is in "wire").
// Exit: 0 done, 2 an error event, 3 timeout.
import { randomUUID } from 'node:crypto';
import { Role, TaskState } from '@a2a-js/sdk';
import {
  Client, ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory,
} from '@a2a-js/sdk/client';
import { LegacyJsonRpcTransport } from '@a2a-js/sdk/compat/v0_3/client';

const argv = process.argv.slice(2);
const command = argv.shift();
const opt = { dialect: '1.0', text: 'Is the deploy ok?', timeoutMs: 30000, pollMs: 100, auth: 'bearer' };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => argv[++i];
  switch (a) {
    case '--url': opt.url = val().replace(/\/+$/, ''); break;
    case '--dialect': opt.dialect = val(); break;
    case '--skill': opt.skill = val(); break;
    case '--text': opt.text = val(); break;
    case '--message-id': opt.messageId = val(); break;
    case '--task-id': opt.taskId = val(); break;
    case '--task': opt.task = val(); break;
    case '--choices': opt.choices = JSON.parse(val()); break;
    case '--notify': opt.notify = true; break;
    case '--no-wait': opt.noWait = true; break;
    case '--no-poll': opt.noPoll = true; break;
    case '--timeout-ms': opt.timeoutMs = Number(val()); break;
    case '--poll-ms': opt.pollMs = Number(val()); break;
    case '--auth': opt.auth = val(); break;
    default:
      console.error(`unknown option ${a}`);
      process.exit(64);
  }
}
if (!command || !opt.url) {
  console.error('usage: node inbound_client.mjs COMMAND --url BASE [options]');
  process.exit(64);
}

const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------
// The wire: every JSON-RPC call and what came back, seen through the fetch
// the SDK is given. The body is read from a clone, so the SDK's own reading
// is untouched; streams are read to their end in the background.

const calls = [];
const pending = [];
const token = process.env.A2A_TOKEN ?? '';

function authHeaders() {
  if (opt.auth === 'bearer') return { Authorization: `Bearer ${token}` };
  if (opt.auth === 'apikey') return { 'X-API-Key': token };
  return {};
}

async function wireFetch(url, init = {}) {
  const headers = { ...(init.headers ?? {}), ...authHeaders() };
  let method = null;
  let meta = null;
  try {
    const rq = JSON.parse(init.body ?? 'null');
    method = rq?.method ?? null;
    meta = rq?.params?.message?.metadata ?? null;
  } catch { /* not JSON-RPC */ }
  const res = await fetch(url, { ...init, headers });
  const call = {
    method,
    version: headers['A2A-Version'] ?? headers['a2a-version'] ?? '',
    meta,
    http: res.status,
    contentType: res.headers.get('content-type') ?? '',
    wwwAuthenticate: res.headers.get('www-authenticate'),
    retryAfter: res.headers.get('retry-after'),
    states: [],
    finals: [],
    kinds: [],
    body: null,
  };
  calls.push(call);
  pending.push(res.clone().text().then((text) => {
    call.body = text.length > 8192 ? `${text.slice(0, 8192)}...` : text;
    for (const m of text.matchAll(/"state"\s*:\s*"([^"]+)"/g)) call.states.push(m[1]);
    for (const m of text.matchAll(/"final"\s*:\s*(true|false)/g)) call.finals.push(m[1] === 'true');
    for (const m of text.matchAll(/"kind"\s*:\s*"([^"]+)"/g)) call.kinds.push(m[1]);
  }, () => {}));
  return res;
}

// The JSON-RPC error of the last call, when its body was one.
async function lastError(e, method) {
  await Promise.allSettled(pending);
  const c = calls[calls.length - 1];
  let code = e?.envelopeCode ?? e?.code ?? null;
  let message = e?.message ?? String(e);
  if (c?.body) {
    for (const chunk of c.body.split(/\n/)) {
      const s = chunk.replace(/^data:\s*/, '').trim();
      if (!s.startsWith('{')) continue;
      try {
        const j = JSON.parse(s);
        if (j?.error) { code = j.error.code; message = j.error.message; }
      } catch { /* not JSON */ }
    }
  }
  return {
    event: 'error', method, http: c?.http ?? null, code: typeof code === 'number' ? code : null,
    message, wwwAuthenticate: c?.wwwAuthenticate ?? null, retryAfter: c?.retryAfter ?? null,
  };
}

// ------------------------------------------------------------------------
// What the SDK hands back, in one shape for both dialects.

const stateName = (s) => (typeof s === 'number'
  ? (TaskState[s] ?? `unknown-${s}`).replace(/^TASK_STATE_/, '').toLowerCase().replace(/_/g, '-')
  : String(s ?? ''));
const roleName = (r) => (typeof r === 'number' ? (Role[r] ?? '').replace(/^ROLE_/, '').toLowerCase() : String(r ?? ''));
const textOf = (parts) => (parts ?? []).map((p) => (p?.content?.$case === 'text' ? p.content.value : '')).join('');
const TERMINAL = new Set(['completed', 'failed', 'canceled', 'rejected']);

function summary(t) {
  if (!t) return null;
  const arts = t.artifacts ?? [];
  return {
    id: t.id,
    contextId: t.contextId,
    state: stateName(t.status?.state),
    statusText: textOf(t.status?.message?.parts),
    statusRole: t.status?.message ? roleName(t.status.message.role) : '',
    answer: arts.map((a) => textOf(a.parts)).join(''),
    artifacts: arts.length,
    answeredAt: arts.map((a) => a.metadata?.answered_at).find((x) => x !== undefined) ?? null,
    history: (t.history ?? []).map((m) => ({ role: roleName(m.role), text: textOf(m.parts) })),
  };
}

// ------------------------------------------------------------------------
// The client in the dialect asked.

async function rawCard(path) {
  const res = await wireFetch(`${opt.url}${path}`, { headers: { 'A2A-Version': '1.0' } });
  const text = await res.text();
  try { return { http: res.status, json: JSON.parse(text) }; } catch { return { http: res.status, json: null }; }
}

async function makeClient() {
  if (opt.dialect === '0.3') {
    // The SDK's v0.3 client: the card's top-level url is the 0.3 endpoint.
    const { json } = await rawCard('/.well-known/agent-card.json');
    const card = new DefaultAgentCardResolver({ fetchImpl: wireFetch, legacyCompat: { enabled: true } })
      .normalizeAgentCard(json);
    const transport = new LegacyJsonRpcTransport({ endpoint: json.url, fetchImpl: wireFetch });
    return new Client(transport, card, { polling: !!opt.noWait });
  }
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
    transports: [new JsonRpcTransportFactory({ fetchImpl: wireFetch })],
    cardResolver: new DefaultAgentCardResolver({ fetchImpl: wireFetch }),
    clientConfig: { polling: !!opt.noWait },
    preferredTransports: ['JSONRPC'],
  }));
  return factory.createFromUrl(opt.url);
}

function sendParams() {
  const metadata = {};
  if (opt.skill !== undefined) metadata.skill = opt.skill;
  if (opt.choices !== undefined) metadata.choices = opt.choices;
  if (opt.notify) metadata.expect_answer = false;
  return {
    tenant: '',
    message: {
      messageId: opt.messageId ?? randomUUID(),
      contextId: '',
      taskId: opt.taskId ?? '',
      role: Role.ROLE_USER,
      parts: [{ content: { $case: 'text', value: opt.text }, metadata: undefined, filename: '', mediaType: 'text/plain' }],
      metadata,
      extensions: [],
      referenceTaskIds: [],
    },
    configuration: undefined,
    metadata: undefined,
  };
}

async function poll(client, id, last) {
  const end = Date.now() + opt.timeoutMs;
  let prev = last?.state;
  let t = last;
  while (Date.now() < end) {
    t = summary(await client.getTask({ tenant: '', id }));
    if (t.state !== prev) out({ event: 'state', task: t });
    prev = t.state;
    if (TERMINAL.has(t.state)) return t;
    await sleep(opt.pollMs);
  }
  return null;
}

// Prints every event of a stream; returns the last task state known.
async function follow(gen) {
  let task = null;
  const timer = setTimeout(() => {
    out({ event: 'timeout' });
    finish(3);
  }, opt.timeoutMs);
  for await (const ev of gen) {
    const p = ev.payload;
    if (!p) continue;
    if (p.$case === 'task') {
      task = summary(p.value);
      out({ event: 'stream', kind: 'task', state: task.state, text: task.statusText, task });
    } else if (p.$case === 'statusUpdate') {
      const v = p.value;
      const state = stateName(v.status?.state);
      if (task) {
        task.state = state;
        task.statusText = textOf(v.status?.message?.parts);
      }
      out({ event: 'stream', kind: 'status', state, text: textOf(v.status?.message?.parts), taskId: v.taskId });
    } else if (p.$case === 'artifactUpdate') {
      const a = p.value.artifact;
      if (task) {
        task.answer += textOf(a?.parts);
        task.artifacts += 1;
        task.answeredAt = a?.metadata?.answered_at ?? task.answeredAt;
      }
      out({
        event: 'stream', kind: 'artifact', text: textOf(a?.parts), taskId: p.value.taskId,
        answeredAt: a?.metadata?.answered_at ?? null,
      });
    } else if (p.$case === 'message') {
      out({ event: 'stream', kind: 'message', text: textOf(p.value.parts) });
    }
  }
  clearTimeout(timer);
  return task;
}

async function finish(code) {
  await Promise.race([Promise.allSettled(pending), sleep(2000)]);
  // Repeated identical calls (polling) collapse into one entry with a count.
  const wire = [];
  for (const { body, ...c } of calls) {
    c.states = [...new Set(c.states)];
    c.kinds = [...new Set(c.kinds)];
    const prev = wire[wire.length - 1];
    const { n, ...p } = prev ?? {};
    if (prev && JSON.stringify(p) === JSON.stringify(c)) prev.n += 1;
    else wire.push({ ...c, n: 1 });
  }
  out({ event: 'wire', calls: wire });
  process.exit(code);
}

async function main() {
  if (command === 'card') {
    const card = await rawCard('/.well-known/agent-card.json');
    const legacy = await rawCard('/.well-known/agent.json');
    const parsed = new DefaultAgentCardResolver({ fetchImpl: wireFetch }).normalizeAgentCard(card.json);
    out({
      event: 'card', http: card.http, card: card.json, legacyHttp: legacy.http, legacy: legacy.json,
      skills: (parsed.skills ?? []).map((s) => s.id),
      interfaces: (parsed.supportedInterfaces ?? []).map((i) => ({
        url: i.url, binding: i.protocolBinding, version: i.protocolVersion,
      })),
    });
    return 0;
  }
  const client = await makeClient();
  if (command === 'ask') {
    const r = await client.sendMessage(sendParams());
    if ('messageId' in r) {
      out({ event: 'message', text: textOf(r.parts) });
      return 0;
    }
    let t = summary(r);
    out({ event: 'sent', task: t });
    if (opt.noPoll || TERMINAL.has(t.state)) {
      out({ event: 'final', task: t });
      return 0;
    }
    t = await poll(client, t.id, t);
    if (!t) return 3;
    out({ event: 'final', task: t });
    return 0;
  }
  if (command === 'stream' || command === 'subscribe') {
    const gen = command === 'stream'
      ? client.sendMessageStream(sendParams())
      : client.resubscribeTask({ tenant: '', id: opt.task });
    const t = await follow(gen);
    out({ event: 'final', task: t });
    return 0;
  }
  if (command === 'get' || command === 'wait') {
    let t = summary(await client.getTask({ tenant: '', id: opt.task }));
    out({ event: 'state', task: t });
    if (command === 'wait' && !TERMINAL.has(t.state)) {
      t = await poll(client, opt.task, t);
      if (!t) return 3;
    }
    out({ event: 'final', task: t });
    return 0;
  }
  if (command === 'cancel') {
    const t = summary(await client.cancelTask({ tenant: '', id: opt.task, metadata: undefined }));
    out({ event: 'final', task: t });
    return 0;
  }
  console.error(`unknown command ${command}`);
  return 64;
}

main().then((code) => finish(code), async (e) => {
  out(await lastError(e, command));
  await finish(2);
});

// A tiny A2A agent on the official JS SDK. Usage: node agent.mjs 1.0|0.3|dual|rest PORT
//   "ask"          -> input-required "What is your name?"; the answer
//                     completes the task with "Hello, <answer>"
//   "task <words>" -> a task streamed as artifact chunks, then completed
//   "fail"         -> a task that fails with "cannot do that"
//   "file"         -> a Message "got <name> <media type> <length> <content>"
//                     for each file part received, with a file part (bytes
//                     "agent bytes", out.bin) and a data part {ok, n}
//   "filetask"     -> a task whose artifact holds the text "report", that
//                     file part and that data part
//   "wait <ms>"    -> a task working for ms, then completed "waited <ms>"
//   "choose"       -> input-required "Proceed?" with a data part
//                     {"choices": ["yes", "no"]}
//   anything else  -> a Message "echo: <text>"
// In 0.3 mode the card lists only a 0.3 JSON-RPC interface and the SDK's
// v0.3 compat layer answers; in dual mode the card lists both versions on
// one endpoint and both are answered; in rest mode the card lists only a
// 1.0 HTTP+JSON interface, served by the SDK's restHandler; with "push" the
// card allows push notifications (the SDK's default store and sender); in rest03 mode
// only a 0.3 HTTP+JSON interface, served by the SDK's legacyRestRouter.
import express from 'express';
import { randomUUID } from 'node:crypto';
import { Role, TaskState } from '@a2a-js/sdk';
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore } from '@a2a-js/sdk/server';
import { UserBuilder, agentCardHandler, jsonRpcHandler, restHandler } from '@a2a-js/sdk/server/express';
import { legacyAgentCardRouter, legacyRestRouter } from '@a2a-js/sdk/compat/v0_3/server/express';

const mode = process.argv[2];
const port = Number(process.argv[3]);
const push = process.argv[4] === 'push';
const base = `http://127.0.0.1:${port}`;

const card = {
  name: 'routerd interop agent',
  description: 'echoes, asks, streams',
  supportedInterfaces: mode === 'rest'
    ? [{ url: `${base}/rest`, protocolBinding: 'HTTP+JSON', protocolVersion: '1.0', tenant: '' }]
    : mode === 'rest03'
    ? [{ url: `${base}/rest03`, protocolBinding: 'HTTP+JSON', protocolVersion: '0.3', tenant: '' }]
    : (mode === 'dual' ? ['1.0', '0.3'] : [mode]).map((v) => (
      { url: `${base}/rpc`, protocolBinding: 'JSONRPC', protocolVersion: v, tenant: '' })),
  provider: undefined,
  version: '1.0.0',
  capabilities: { streaming: true, pushNotifications: push, extensions: [], extendedAgentCard: false },
  securitySchemes: {},
  securityRequirements: [],
  defaultInputModes: ['text/plain'],
  defaultOutputModes: ['text/plain'],
  skills: [
    {
      id: 'echo', name: 'echo', description: 'echoes', tags: ['echo'], examples: [],
      inputModes: [], outputModes: [], securityRequirements: [],
    },
  ],
  signatures: [],
};

const part = (t) => ({ content: { $case: 'text', value: t }, metadata: undefined, filename: '', mediaType: 'text/plain' });
const filePart = () => ({
  content: { $case: 'raw', value: Buffer.from('agent bytes') }, metadata: undefined,
  filename: 'out.bin', mediaType: 'application/octet-stream',
});
const dataPart = () => ({ content: { $case: 'data', value: { ok: true, n: 2 } }, metadata: undefined, filename: '', mediaType: '' });
const filesOf = (m) => (m?.parts ?? []).filter((p) => p.content?.$case === 'raw' || p.content?.$case === 'url')
  .map((p) => (p.content.$case === 'raw'
    ? `got ${p.filename} ${p.mediaType} ${p.content.value.length} ${Buffer.from(p.content.value).toString()}`
    : `got ${p.filename} ${p.mediaType} url ${p.content.value}`));
const textOf = (m) => (m?.parts ?? []).map((p) => (p.content?.$case === 'text' ? p.content.value : '')).join('');
const message = (t, contextId, taskId = '') => ({
  messageId: randomUUID(), contextId, taskId, role: Role.ROLE_AGENT, parts: [part(t)],
  metadata: undefined, extensions: [], referenceTaskIds: [],
});
const status = (state, msg) => ({ state, message: msg, timestamp: new Date().toISOString() });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const executor = {
  async execute(rc, bus) {
    const text = textOf(rc.userMessage);
    const { taskId, contextId } = rc;
    const task = (state, msg) => ({
      id: taskId, contextId, status: status(state, msg), artifacts: [], history: [], metadata: undefined,
    });
    const artifact = (t, append, lastChunk) => AgentEvent.artifactUpdate({
      taskId, contextId, append, lastChunk, metadata: undefined,
      artifact: { artifactId: 'answer', name: 'answer', description: '', parts: [part(t)], metadata: undefined, extensions: [] },
    });
    const update = (state, msg) => AgentEvent.statusUpdate({ taskId, contextId, status: status(state, msg), metadata: undefined });
    if (rc.task) {
      bus.publish(AgentEvent.task(rc.task));
      bus.publish(artifact(`Hello, ${text}`, false, true));
      bus.publish(update(TaskState.TASK_STATE_COMPLETED));
    } else if (text === 'ask') {
      bus.publish(AgentEvent.task(task(TaskState.TASK_STATE_INPUT_REQUIRED,
        message('What is your name?', contextId, taskId))));
    } else if (text === 'file') {
      const m = message(filesOf(rc.userMessage).join('\n') || 'no files', contextId);
      m.parts.push(filePart(), dataPart());
      bus.publish(AgentEvent.message(m));
    } else if (text === 'filetask') {
      bus.publish(AgentEvent.task(task(TaskState.TASK_STATE_SUBMITTED)));
      await sleep(30);
      bus.publish(AgentEvent.artifactUpdate({
        taskId, contextId, append: false, lastChunk: true, metadata: undefined,
        artifact: {
          artifactId: 'report', name: 'report', description: '', metadata: undefined, extensions: [],
          parts: [part('report'), filePart(), dataPart()],
        },
      }));
      bus.publish(update(TaskState.TASK_STATE_COMPLETED));
    } else if (text.startsWith('wait ')) {
      bus.publish(AgentEvent.task(task(TaskState.TASK_STATE_SUBMITTED)));
      bus.publish(update(TaskState.TASK_STATE_WORKING));
      await sleep(Number(text.slice(5)));
      bus.publish(artifact(`waited ${text.slice(5)}`, false, true));
      bus.publish(update(TaskState.TASK_STATE_COMPLETED));
    } else if (text === 'choose') {
      const m = message('Proceed?', contextId, taskId);
      m.parts.push({ content: { $case: 'data', value: { choices: ['yes', 'no'] } }, metadata: undefined, filename: '', mediaType: '' });
      bus.publish(AgentEvent.task(task(TaskState.TASK_STATE_INPUT_REQUIRED, m)));
    } else if (text === 'fail') {
      bus.publish(AgentEvent.task(task(TaskState.TASK_STATE_SUBMITTED)));
      await sleep(30);
      bus.publish(update(TaskState.TASK_STATE_FAILED, message('cannot do that', contextId, taskId)));
    } else if (text.startsWith('task ')) {
      bus.publish(AgentEvent.task(task(TaskState.TASK_STATE_SUBMITTED)));
      bus.publish(update(TaskState.TASK_STATE_WORKING));
      const words = text.slice(5).split(' ');
      for (let i = 0; i < words.length; i++) {
        await sleep(50);
        bus.publish(artifact((i ? ' ' : '') + words[i], i > 0, i === words.length - 1));
      }
      bus.publish(update(TaskState.TASK_STATE_COMPLETED));
    } else {
      bus.publish(AgentEvent.message(message(`echo: ${text}`, contextId)));
    }
    bus.finished();
  },
  async cancelTask(taskId, bus) {
    bus.finished();
  },
};

const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), executor);
const app = express();
const legacy = mode === '0.3' || mode === 'dual' || mode === 'rest03';
if (legacy) app.use('/.well-known/agent-card.json', legacyAgentCardRouter({ agentCardProvider: handler }));
app.use('/.well-known/agent-card.json', agentCardHandler({ agentCardProvider: handler }));
// The version header of every call goes to the log, for run.sh to check.
app.use('/rpc', (req, res, next) => { console.log(`rpc A2A-Version=${req.get('A2A-Version') ?? 'none'}`); next(); });
app.use('/rpc', jsonRpcHandler({
  requestHandler: handler, userBuilder: UserBuilder.noAuthentication, legacyCompat: { enabled: legacy },
}));
app.use('/rest', (req, res, next) => { console.log(`rest ${req.method} ${req.path} A2A-Version=${req.get('A2A-Version') ?? 'none'}`); next(); });
app.use('/rest', restHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));
app.use('/rest03', (req, res, next) => { console.log(`rest03 ${req.method} ${req.path} A2A-Version=${req.get('A2A-Version') ?? 'none'}`); next(); });
app.use('/rest03', legacyRestRouter({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));
app.listen(port, '127.0.0.1', () => console.log(`agent ${mode} listening on ${base}`));

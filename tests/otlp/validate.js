#!/usr/bin/env node
// Validates OTLP/HTTP JSON trace export requests against the OpenTelemetry
// protobuf definitions (opentelemetry-proto, loaded with protobufjs) and
// the OTLP JSON mapping rules, then checks routerd's trace shape.
//
//   node validate.js [--env E] [--service S] FILE_OR_DIR...
//
// Each file holds one request body. Prints a JSON summary on stdout:
//   {"ok":bool,"problems":[...],"payloads":n,"spans":n,
//    "traces":[{"id","error","status","update_id","spans":[names],
//               "backend_span_id","failure_class","persona"}]}
// and exits 0 when no problem was found, 1 otherwise, 2 on usage errors.
'use strict';

const fs = require('fs');
const path = require('path');
const protobuf = require('protobufjs');

const PROTO_ROOT = path.join(
  path.dirname(require.resolve('@opentelemetry/otlp-grpc-exporter-base/package.json')),
  'build', 'protos');

let rootCache = null;
function loadRoot() {
  if (rootCache) return rootCache;
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => path.join(PROTO_ROOT, target);
  root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto', { keepCase: false });
  root.resolveAll();
  rootCache = root;
  return root;
}

// OTLP JSON deviates from the proto3 JSON mapping here: ids are hex.
const HEX_IDS = {
  'opentelemetry.proto.trace.v1.Span': { traceId: 32, spanId: 16, parentSpanId: 16 },
  'opentelemetry.proto.trace.v1.Span.Link': { traceId: 32, spanId: 16 },
};

const INT32 = new Set(['int32', 'sint32', 'sfixed32']);
const UINT32 = new Set(['uint32', 'fixed32']);
const INT64 = new Set(['int64', 'sint64', 'sfixed64']);
const UINT64 = new Set(['uint64', 'fixed64']);

function checkInt(v, signed, bits, where, problems) {
  let n;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return problems.push(`${where}: ${v} is not an integer`);
    n = BigInt(v);
  } else if (typeof v === 'string') {
    if (!/^-?[0-9]+$/.test(v)) return problems.push(`${where}: "${v}" is not a decimal integer`);
    n = BigInt(v);
  } else {
    return problems.push(`${where}: expected an integer, got ${typeof v}`);
  }
  const lo = signed ? -(1n << BigInt(bits - 1)) : 0n;
  const hi = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  if (n < lo || n > hi) problems.push(`${where}: ${v} out of range for ${bits}-bit`);
  return undefined;
}

// Walks obj as message type `type`, appending problems.
function checkMessage(type, obj, where, problems) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    problems.push(`${where}: expected an object for ${type.fullName}`);
    return;
  }
  const byJson = new Map();
  for (const f of type.fieldsArray) byJson.set(f.name, f); // keepCase false: camelCase names
  const seenOneof = new Map();
  for (const [key, val] of Object.entries(obj)) {
    const f = byJson.get(key);
    const at = `${where}.${key}`;
    if (!f) {
      problems.push(`${at}: no field "${key}" in ${type.fullName}`);
      continue;
    }
    if (val === null) {
      problems.push(`${at}: null (omit the field instead)`);
      continue;
    }
    if (f.partOf) {
      const prev = seenOneof.get(f.partOf.name);
      if (prev) problems.push(`${at}: oneof ${f.partOf.name} already set by ${prev}`);
      seenOneof.set(f.partOf.name, key);
    }
    if (f.repeated) {
      if (!Array.isArray(val)) {
        problems.push(`${at}: expected an array`);
        continue;
      }
      val.forEach((v, i) => checkValue(type, f, v, `${at}[${i}]`, problems));
    } else {
      checkValue(type, f, val, at, problems);
    }
  }
}

function checkValue(type, f, v, at, problems) {
  const hex = HEX_IDS[type.fullName.replace(/^\./, '')];
  if (f.resolvedType instanceof protobuf.Type) return checkMessage(f.resolvedType, v, at, problems);
  if (f.resolvedType instanceof protobuf.Enum) {
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      return problems.push(`${at}: OTLP JSON enums are integers, got ${JSON.stringify(v)}`);
    }
    if (!Object.values(f.resolvedType.values).includes(v)) {
      problems.push(`${at}: ${v} is not a value of ${f.resolvedType.fullName}`);
    }
    return undefined;
  }
  switch (f.type) {
    case 'string':
      if (typeof v !== 'string') problems.push(`${at}: expected a string`);
      return undefined;
    case 'bool':
      if (typeof v !== 'boolean') problems.push(`${at}: expected a boolean`);
      return undefined;
    case 'double':
    case 'float':
      if (typeof v !== 'number' && !['NaN', 'Infinity', '-Infinity'].includes(v)) {
        problems.push(`${at}: expected a number`);
      }
      return undefined;
    case 'bytes':
      if (typeof v !== 'string') return problems.push(`${at}: expected a string for bytes`);
      if (hex && hex[f.name]) {
        const n = hex[f.name];
        const okLen = v.length === n || (f.name === 'parentSpanId' && v.length === 0);
        if (!okLen || !/^[0-9a-fA-F]*$/.test(v)) {
          problems.push(`${at}: OTLP JSON ids are ${n} hex digits, got "${v}"`);
        } else if (v.length && /^0+$/.test(v)) {
          problems.push(`${at}: all-zero id is invalid`);
        }
      } else if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(v)) {
        problems.push(`${at}: bytes must be base64`);
      }
      return undefined;
    default:
      if (INT32.has(f.type)) return checkInt(v, true, 32, at, problems);
      if (UINT32.has(f.type)) return checkInt(v, false, 32, at, problems);
      if (INT64.has(f.type)) return checkInt(v, true, 64, at, problems);
      if (UINT64.has(f.type)) return checkInt(v, false, 64, at, problems);
      problems.push(`${at}: unhandled field type ${f.type}`);
      return undefined;
  }
}

// Hex ids to bytes, so protobufjs (which expects base64) can encode them.
function idsToBytes(req) {
  const copy = JSON.parse(JSON.stringify(req));
  for (const rs of copy.resourceSpans || []) {
    for (const ss of rs.scopeSpans || []) {
      for (const s of ss.spans || []) {
        for (const k of ['traceId', 'spanId', 'parentSpanId']) {
          if (typeof s[k] === 'string') s[k] = Buffer.from(s[k], 'hex');
        }
      }
    }
  }
  return copy;
}

function attrs(list) {
  const out = {};
  for (const kv of list || []) {
    const v = kv.value || {};
    if ('stringValue' in v) out[kv.key] = v.stringValue;
    else if ('intValue' in v) out[kv.key] = Number(v.intValue);
    else if ('doubleValue' in v) out[kv.key] = v.doubleValue;
    else if ('boolValue' in v) out[kv.key] = v.boolValue;
    else out[kv.key] = v;
  }
  return out;
}

const CHILDREN = new Set(['receive', 'route', 'backend', 'send']);

// Validates request bodies (strings). opts: {env, service}.
function validate(bodies, opts = {}) {
  const root = loadRoot();
  const Req = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
  const problems = [];
  const traces = new Map();
  let nspans = 0;
  bodies.forEach((body, bi) => {
    const where = `payload[${bi}]`;
    let req;
    try {
      req = JSON.parse(body);
    } catch (e) {
      problems.push(`${where}: not JSON: ${e.message}`);
      return;
    }
    const before = problems.length;
    checkMessage(Req, req, where, problems);
    if (problems.length > before) return;
    // The binary form must carry the same spans: what a collector decodes.
    try {
      const msg = Req.fromObject(idsToBytes(req));
      const back = Req.toObject(Req.decode(Req.encode(msg).finish()),
        { longs: String, enums: Number, bytes: String });
      const n1 = (req.resourceSpans || []).flatMap((r) => (r.scopeSpans || []).flatMap((s) => s.spans || [])).length;
      const n2 = (back.resourceSpans || []).flatMap((r) => (r.scopeSpans || []).flatMap((s) => s.spans || [])).length;
      if (n1 !== n2) problems.push(`${where}: ${n1} spans in JSON, ${n2} after a protobuf round trip`);
    } catch (e) {
      problems.push(`${where}: protobuf encode/decode failed: ${e.message}`);
    }
    for (const [ri, rs] of (req.resourceSpans || []).entries()) {
      const res = attrs(rs.resource && rs.resource.attributes);
      if (typeof res['service.name'] !== 'string' || !res['service.name']) {
        problems.push(`${where}.resourceSpans[${ri}]: resource without service.name`);
      } else if (opts.service && res['service.name'] !== opts.service) {
        problems.push(`${where}: service.name "${res['service.name']}", expected "${opts.service}"`);
      }
      if (opts.env && res['deployment.environment.name'] !== opts.env) {
        problems.push(`${where}: deployment.environment.name is not "${opts.env}"`);
      }
      for (const ss of rs.scopeSpans || []) {
        for (const s of ss.spans || []) {
          nspans++;
          const at = `${where} span ${s.spanId}`;
          if (!s.name) problems.push(`${at}: no name`);
          if (!s.traceId || !s.spanId) {
            problems.push(`${at}: missing ids`);
            continue;
          }
          const start = BigInt(s.startTimeUnixNano || 0);
          const end = BigInt(s.endTimeUnixNano || 0);
          if (start <= 0n || end < start) problems.push(`${at}: bad times ${start}..${end}`);
          let t = traces.get(s.traceId);
          if (!t) traces.set(s.traceId, (t = { spans: [], payloads: new Set() }));
          t.spans.push({ ...s, attrs: attrs(s.attributes), start, end });
          t.payloads.add(bi);
        }
      }
    }
  });

  const out = [];
  for (const [id, t] of traces) {
    const at = `trace ${id}`;
    const roots = t.spans.filter((s) => !s.parentSpanId);
    if (roots.length !== 1) {
      problems.push(`${at}: ${roots.length} root spans`);
      continue;
    }
    const r = roots[0];
    if (r.name !== 'message') problems.push(`${at}: root span is "${r.name}"`);
    const ids = new Set();
    const names = [];
    for (const s of t.spans) {
      if (ids.has(s.spanId)) problems.push(`${at}: span id ${s.spanId} twice`);
      ids.add(s.spanId);
      if (s === r) continue;
      names.push(s.name);
      if (s.parentSpanId !== r.spanId) problems.push(`${at}: ${s.name} has parent ${s.parentSpanId}, not the root`);
      if (!CHILDREN.has(s.name)) problems.push(`${at}: unexpected span "${s.name}"`);
      if (s.start < r.start || s.end > r.end) problems.push(`${at}: ${s.name} outside the root span`);
    }
    if (new Set(names).size !== names.length) problems.push(`${at}: a stage span appears twice`);
    if (!names.includes('receive')) problems.push(`${at}: no receive span`);
    const a = r.attrs;
    for (const k of ['routerd.env', 'routerd.status']) {
      if (typeof a[k] !== 'string') problems.push(`${at}: root lacks ${k}`);
    }
    if (!Number.isInteger(a['routerd.update_id'])) problems.push(`${at}: root lacks routerd.update_id`);
    if (opts.env && a['routerd.env'] !== opts.env) problems.push(`${at}: routerd.env is "${a['routerd.env']}"`);
    const status = a['routerd.status'];
    const failed = status === 'failed' || status === 'send_failed' || !!a['routerd.failure_class'];
    const code = r.status ? r.status.code : 0;
    if (failed && code !== 2) problems.push(`${at}: failed (${status}) but root status code ${code}`);
    if (!failed && code === 2) problems.push(`${at}: status ${status} but root status is error`);
    const be = t.spans.find((s) => s.name === 'backend');
    if (be) {
      if (typeof be.attrs['routerd.backend'] !== 'string') problems.push(`${at}: backend span lacks routerd.backend`);
      if (a['routerd.failure_class'] && (!be.status || be.status.code !== 2)) {
        problems.push(`${at}: backend span not marked as error`);
      }
    }
    if (status === 'ok' && !be) problems.push(`${at}: ok message without backend span`);
    if (a['routerd.persona'] !== undefined && typeof a['routerd.persona'] !== 'string') {
      problems.push(`${at}: routerd.persona is not a string`);
    }
    out.push({
      id,
      error: code === 2,
      status,
      update_id: a['routerd.update_id'],
      persona: a['routerd.persona'],
      failure_class: a['routerd.failure_class'] || null,
      spans: names,
      backend_span_id: be ? be.spanId : null,
      root_span_id: r.spanId,
    });
  }
  return { ok: problems.length === 0, problems, payloads: bodies.length, spans: nspans, traces: out };
}

function main(argv) {
  const opts = {};
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--env') opts.env = argv[++i];
    else if (argv[i] === '--service') opts.service = argv[++i];
    else files.push(argv[i]);
  }
  if (!files.length) {
    process.stderr.write('usage: validate.js [--env E] [--service S] FILE_OR_DIR...\n');
    return 2;
  }
  const bodies = [];
  for (const f of files) {
    if (fs.statSync(f).isDirectory()) {
      for (const n of fs.readdirSync(f).sort()) bodies.push(fs.readFileSync(path.join(f, n), 'utf8'));
    } else {
      bodies.push(fs.readFileSync(f, 'utf8'));
    }
  }
  const r = validate(bodies, opts);
  r.problems = r.problems.slice(0, 50);
  process.stdout.write(`${JSON.stringify(r)}\n`);
  return r.ok ? 0 : 1;
}

module.exports = { validate };
if (require.main === module) process.exitCode = main(process.argv.slice(2));

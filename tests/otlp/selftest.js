#!/usr/bin/env node
// The validator must accept a known-good routerd payload and refuse each
// kind of mistake, or its "ok" in the integration tests would mean little.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const { validate } = require('./validate');

const good = fs.readFileSync(path.join(__dirname, 'fixtures', 'good.json'), 'utf8');

function spansOf(req) {
  return req.resourceSpans[0].scopeSpans[0].spans;
}

// Applies fn to a fresh copy of the good payload and validates it.
function mutated(fn) {
  const req = JSON.parse(good);
  fn(req, spansOf(req));
  return validate([JSON.stringify(req)], { env: 'test' });
}

function expectProblem(fn, pattern) {
  const r = mutated(fn);
  assert.strictEqual(r.ok, false, 'the validator accepted a broken payload');
  assert.ok(r.problems.some((p) => pattern.test(p)), `no problem matching ${pattern}: ${r.problems.join(' | ')}`);
}

const root = (spans) => spans.find((s) => s.name === 'message');
const named = (spans, n) => spans.find((s) => s.name === n);
const failedRoot = (spans) => spans.find((s) => s.name === 'message' && s.status && s.status.code === 2);

test('the good fixture passes, with its traces described', () => {
  const r = validate([good], { env: 'test', service: 'routerd' });
  assert.deepStrictEqual(r.problems, []);
  assert.strictEqual(r.traces.length, 3);
  assert.strictEqual(r.traces.filter((t) => t.error).length, 1);
  for (const t of r.traces) assert.ok(t.spans.includes('backend'));
});

test('ids must be hex, not base64', () => expectProblem((req, s) => {
  s[0].traceId = Buffer.from(s[0].traceId, 'hex').toString('base64');
}, /hex digits/));

test('enums are integers', () => expectProblem((req, s) => { s[0].kind = 'SPAN_KIND_SERVER'; }, /enums are integers/));

test('undefined enum values are refused', () => expectProblem((req, s) => { s[0].kind = 9; }, /not a value of/));

test('field names are lowerCamelCase', () => expectProblem((req, s) => {
  s[0].trace_id = s[0].traceId;
}, /no field "trace_id"/));

test('64-bit times are decimal', () => expectProblem((req, s) => { s[0].startTimeUnixNano = '12:00'; }, /decimal integer/));

test('intValue must be an integer', () => expectProblem((req, s) => {
  root(s).attributes.find((a) => a.key === 'routerd.update_id').value.intValue = 'seven';
}, /decimal integer/));

test('AnyValue is a oneof', () => expectProblem((req, s) => {
  root(s).attributes[0].value.intValue = '1';
}, /oneof/));

test('null is not a value', () => expectProblem((req, s) => { s[0].parentSpanId = null; }, /null/));

test('service.name is required', () => expectProblem((req) => {
  req.resourceSpans[0].resource.attributes = req.resourceSpans[0].resource.attributes
    .filter((a) => a.key !== 'service.name');
}, /service.name/));

test('children hang off the root', () => expectProblem((req, s) => {
  named(s, 'send').parentSpanId = 'aaaaaaaaaaaaaaaa';
}, /not the root/));

test('one root per trace', () => expectProblem((req, s) => { delete named(s, 'route').parentSpanId; }, /root spans/));

test('children stay inside the root', () => expectProblem((req, s) => {
  const r = root(s);
  const send = s.find((x) => x.name === 'send' && x.traceId === r.traceId);
  send.endTimeUnixNano = (BigInt(r.endTimeUnixNano) + 1000n).toString();
}, /outside the root/));

test('a failed message has an error status', () => expectProblem((req, s) => {
  delete failedRoot(s).status;
}, /root status code/));

test('the environment attribute matches', () => expectProblem((req, s) => {
  root(s).attributes.find((a) => a.key === 'routerd.env').value.stringValue = 'prod';
}, /routerd.env/));

test('not JSON', () => {
  const r = validate(['{"resourceSpans":['], {});
  assert.strictEqual(r.ok, false);
});

#!/usr/bin/env node
// Checks routerd-dashboard.json: valid JSON that Grafana can import (unique
// panel ids, panels inside the 24-column grid, every query on the
// $datasource variable), every PromQL expression parsed by `promtool check
// rules` (as recording rules), and every metric it or the alert rules use
// listed in docs/observability.md.
//   node check-dashboard.js DASHBOARD.json ALERTS.yml OBSERVABILITY.md
// Exit 0 ok, 1 problems, 77 when promtool is missing.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const [dashFile, alertsFile, docFile] = process.argv.slice(2);
if (!docFile) {
  console.error('usage: check-dashboard.js DASHBOARD.json ALERTS.yml OBSERVABILITY.md');
  process.exit(2);
}
if (spawnSync('promtool', ['--version']).error) {
  console.error('promtool not found (Debian package prometheus): skipped');
  process.exit(77);
}

const problems = [];
const dash = JSON.parse(fs.readFileSync(dashFile, 'utf8'));
if (!dash.uid || !dash.title || !Array.isArray(dash.panels)) problems.push('uid, title and panels are required');
const dsVar = (dash.templating.list || []).find((v) => v.type === 'datasource' && v.query === 'prometheus');
if (!dsVar) problems.push('no Prometheus datasource variable');

const ids = new Set();
const exprs = [];
for (const p of dash.panels) {
  if (ids.has(p.id)) problems.push(`panel id ${p.id} used twice`);
  ids.add(p.id);
  const g = p.gridPos || {};
  if (!(g.w > 0 && g.h > 0 && g.x >= 0 && g.x + g.w <= 24)) problems.push(`panel "${p.title}" outside the grid`);
  if (p.type === 'row') continue;
  if (!p.datasource || p.datasource.uid !== '${datasource}') problems.push(`panel "${p.title}" not on $datasource`);
  for (const t of p.targets || []) {
    if (!t.expr) problems.push(`panel "${p.title}" has a target without expr`);
    else exprs.push({ panel: p.title, expr: t.expr });
  }
}
for (const v of dash.templating.list) {
  if (v.type === 'query') exprs.push({ panel: `variable ${v.name}`, expr: null, def: v.definition });
}

// Grafana variables to something PromQL parses.
const promql = (e) => e.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m').replace(/\$(job|instance)\b/g, '.*');
const rules = exprs.filter((e) => e.expr).map((e, i) => ({ record: `dashboard:panel_${i}`, expr: promql(e.expr) }));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'routerd-dash-'));
const rulesFile = path.join(tmp, 'dashboard-rules.yml');
fs.writeFileSync(rulesFile, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }));
const r = spawnSync('promtool', ['check', 'rules', rulesFile], { encoding: 'utf8' });
if (r.status !== 0) problems.push(`promtool check rules on the dashboard queries:\n${r.stdout}${r.stderr}`);
fs.rmSync(tmp, { recursive: true, force: true });

// Every metric used is documented.
const doc = fs.readFileSync(docFile, 'utf8');
const text = exprs.map((e) => e.expr || e.def).join('\n') + fs.readFileSync(alertsFile, 'utf8');
const used = new Set();
for (const m of text.matchAll(/\b((?:routerd|process)_[a-z0-9_]+)\b/g)) {
  used.add(m[1].replace(/_(bucket|sum|count)$/, ''));
}
for (const m of used) {
  if (!doc.includes('`' + m + '`')) problems.push(`metric ${m} is not in ${path.basename(docFile)}`);
}

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`dashboard: ${dash.panels.length} panels, ${rules.length} queries parsed, ${used.size} metrics documented`);

// Validates frames clawline sent against OpenClaw's published protocol schema
// (@openclaw/gateway-protocol's protocol.schema.json), with the validator OpenClaw's own
// packages depend on (ajv).
//
//   node validate_frames.mjs <openclaw-compat dir> <frames.jsonl>
//
// Each line of frames.jsonl is {"method": <the request's method, for responses>, "frame": <frame>}.
// Checked: every frame against GatewayFrame; hello-ok against HelloOk; each response payload
// against <Method>Result where the schema defines one; each event payload against its
// definition. The 2026.9.1 schema predates a few fields that 2026.9.6 servers send and its
// clients need; those are added below, by name, and nothing else is relaxed.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const [dir, framesFile] = process.argv.slice(2);
const require = createRequire(path.join(dir, 'node_modules', 'openclaw', 'package.json'));
const Ajv = require('ajv');
const schema = JSON.parse(
  fs.readFileSync(path.join(dir, 'node_modules', '@openclaw', 'gateway-protocol', 'protocol.schema.json'), 'utf8'),
);
const defs = schema.definitions;

// Newer than the published schema (sent by OpenClaw 2026.9.6 gateways, read by its clients).
defs.HelloOk.properties.auth.properties.method = { type: 'string', minLength: 1 };
for (const k of ['sessionKey', 'agentId', 'sessionId', 'lane']) defs.AgentEvent.properties[k] = { type: 'string', minLength: 1 };

// `discriminator` (an OpenAPI keyword) only speeds up oneOf; ajv cannot use its `mapping`
// form, and oneOf alone gives the same answer.
const stripDiscriminators = (node) => {
  if (!node || typeof node !== 'object') return;
  delete node.discriminator;
  for (const v of Object.values(node)) stripDiscriminators(v);
};
stripDiscriminators(schema);
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addSchema(schema);
const check = (name) => ajv.getSchema(`${schema.$id}#/definitions/${name}`);

const pascal = (method) => method.split(/[.-]/).map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join('');
const eventDefs = {
  chat: 'ChatEvent',
  agent: 'AgentEvent',
  tick: 'TickEvent',
  shutdown: 'ShutdownEvent',
  'device.pair.requested': 'DevicePairRequestedEvent',
  'device.pair.resolved': 'DevicePairResolvedEvent',
};

const counts = {};
const failures = [];
const validate = (defName, value, where) => {
  const v = check(defName);
  if (!v) return;
  counts[defName] = (counts[defName] ?? 0) + 1;
  if (!v(value)) failures.push({ where, def: defName, errors: v.errors.slice(0, 5), value: JSON.stringify(value).slice(0, 400) });
};

const lines = fs.readFileSync(framesFile, 'utf8').split('\n').filter(Boolean);
for (const [i, line] of lines.entries()) {
  const { method, frame } = JSON.parse(line);
  const where = `line ${i + 1} (${frame.type} ${frame.event ?? method ?? ''})`;
  validate('GatewayFrame', frame, where);
  if (frame.type === 'res' && frame.ok) {
    if (method === 'connect') validate('HelloOk', frame.payload, where);
    else if (method) {
      const def = [`${pascal(method)}Result`, `${pascal(method)}Response`].find((d) => check(d));
      if (def) validate(def, frame.payload, where);
    }
  }
  if (frame.type === 'event') {
    if (eventDefs[frame.event]) validate(eventDefs[frame.event], frame.payload, where);
    if (frame.event === 'presence') for (const p of frame.payload.presence ?? []) validate('PresenceEntry', p, where);
  }
}
console.log(JSON.stringify({ frames: lines.length, checked: counts, failures: failures.length }));
for (const f of failures) console.log(JSON.stringify(f));
process.exit(failures.length ? 1 : 0);

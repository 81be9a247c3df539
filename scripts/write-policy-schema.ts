// Publishes POLICY_SCHEMA as docs/policy.schema.json (for editors and other
// tools) and renders the field tables of docs/policy.md from it, so the docs
// can never drift from the schema. test/policy/published.test.ts fails when
// either file is stale. Run: node --import tsx scripts/write-policy-schema.ts
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { POLICY_SCHEMA, type SchemaNode } from '../src/policy/schema.ts';
import { expectedValue } from '../src/policy/validate.ts';

export const SCHEMA_FILE = fileURLToPath(new URL('../docs/policy.schema.json', import.meta.url));
export const DOCS_FILE = fileURLToPath(new URL('../docs/policy.md', import.meta.url));
const START = '<!-- policy-fields:start (generated from src/policy/schema.ts by scripts/write-policy-schema.ts; edit the schema, not this) -->';
const END = '<!-- policy-fields:end -->';

export function renderSchemaJson(): string {
  return `${JSON.stringify(POLICY_SCHEMA, null, 2)}\n`;
}

/** docs/policy.md with its generated part brought up to date. */
export function renderPolicyDocs(current: string): string {
  const start = current.indexOf(START);
  const end = current.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${DOCS_FILE}: the markers ${START} … ${END} are missing`);
  return `${current.slice(0, start)}${START}\n\n${renderFieldTables()}\n${current.slice(end)}`;
}

function renderFieldTables(): string {
  const fields = Object.entries(POLICY_SCHEMA.properties ?? {}).filter(([key]) => key !== '$schema');
  const topLevel = fields.filter(([, node]) => node.type !== 'object' || !node.properties);
  const sections = fields.filter(([, node]) => node.type === 'object' && node.properties);
  const parts = [`### Top level\n\n${table(topLevel.flatMap(([key, node]) => rows(key, node)))}`];
  for (const [key, node] of sections) {
    const fieldRows = Object.entries(node.properties ?? {}).flatMap(([child, childNode]) => rows(`${key}.${child}`, childNode));
    parts.push(`### ${key}\n\n${node.description ?? ''}\n\n${table(fieldRows)}`);
  }
  return parts.join('\n');
}

function rows(path: string, node: SchemaNode): string[] {
  // A small group such as openFiles gets a row of its own, then one per member.
  const members = node.type === 'object' && node.properties ? Object.entries(node.properties) : [];
  const kind = members.length > 0 ? `a mapping of ${members.map(([key]) => key).join(', ')}` : expectedValue(node);
  const own = `| \`${path}\` | ${cell(kind)} | ${cell(renderDefault(node.default))} | ${cell(node.description ?? '')} |`;
  return [own, ...members.flatMap(([key, member]) => rows(`${path}.${key}`, member))];
}

function table(lines: string[]): string {
  return ['| Field | Type | Default | What and why |', '|---|---|---|---|', ...lines].join('\n') + '\n';
}

function renderDefault(value: unknown): string {
  if (value === undefined) return '';
  if (Array.isArray(value)) return value.length === 0 ? '`[]`' : value.map((item) => `\`${String(item)}\``).join(', ');
  return `\`${JSON.stringify(value)}\``;
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(SCHEMA_FILE, renderSchemaJson());
  writeFileSync(DOCS_FILE, renderPolicyDocs(readFileSync(DOCS_FILE, 'utf8')));
  console.log(`wrote ${SCHEMA_FILE} and the field tables of ${DOCS_FILE}`);
}

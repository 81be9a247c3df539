import type { AgentSpec } from '../../agents/index.ts';
import { DEFAULT_TAG, type ImageStore } from '../../images/index.ts';
import type { TemplateInfo } from './types.ts';

/**
 * What a create's templateID can name, as the manager resolves it: every
 * image of the store (by NAME:TAG, and by NAME alone when tagged latest),
 * 'base' (the image `base` once built, the host's view until then) and the
 * agent profiles the daemon serves (host-view sandboxes with the agent's
 * policy).
 */
/** E2B's names of templates brig builds in: the companion SDKs create these by default. */
const E2B_TEMPLATE_NAMES: Record<string, string> = { 'code-interpreter-v1': 'code-interpreter' };

/** The image an E2B template name means (code-interpreter-v1: brig's code-interpreter); any other name is itself. */
export function e2bTemplateImage(templateId: string): string {
  return E2B_TEMPLATE_NAMES[templateId] ?? templateId;
}

export async function listTemplates(images: ImageStore | undefined, agents: readonly AgentSpec[]): Promise<TemplateInfo[]> {
  const templates: TemplateInfo[] = [];
  for (const summary of (await images?.listImages()) ?? []) {
    // Read one by one: a concurrent rm may take one away between the listing and its manifest.
    const manifest = await images?.getImage(`${summary.name}:${summary.tag}`).catch(() => undefined);
    if (!manifest) continue;
    templates.push({
      id: `${summary.name}:${summary.tag}`,
      aliases: summary.tag === DEFAULT_TAG ? [summary.name, ...Object.keys(E2B_TEMPLATE_NAMES).filter((name) => E2B_TEMPLATE_NAMES[name] === summary.name)] : [],
      kind: 'image',
      created: summary.created,
      sizeBytes: summary.size,
      labels: manifest.config.labels,
    });
  }
  if (!templates.some((template) => template.aliases.includes('base'))) templates.push({ id: 'base', aliases: [], kind: 'host', created: null, sizeBytes: 0, labels: {} });
  for (const agent of agents) templates.push({ id: agent.name, aliases: [...(agent.aliases ?? [])], kind: 'profile', created: null, sizeBytes: 0, labels: {} });
  return templates;
}

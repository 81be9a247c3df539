/**
 * Built-in templates: Dockerfiles that ship with brig (src/images/templates,
 * copied to dist/templates by the build), built by name on first use or
 * ahead with `brig image build NAME`. They need no context: no COPY.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

export const BUILT_IN_TEMPLATES = ['base'] as const;

export type TemplateName = (typeof BUILT_IN_TEMPLATES)[number];

export function isBuiltInTemplate(name: string): name is TemplateName {
  return (BUILT_IN_TEMPLATES as readonly string[]).includes(name);
}

/** The template's Dockerfile text, from the directory the caller knows (dist/templates beside the bundle). */
export function templateDockerfile(name: TemplateName, templatesDir: string): Promise<string> {
  return fs.readFile(join(templatesDir, `${name}.Dockerfile`), 'utf8');
}

/**
 * Built-in templates: Dockerfiles that ship with brig (src/images/templates,
 * copied to dist/templates by the build), built by name on first use or
 * ahead with `brig image build NAME`. Their build context is the templates
 * directory itself: a template's own files sit in a folder of its name there.
 *
 * A template may name a program the daemon starts in every sandbox booted
 * from it, as E2B templates have a start command:
 *   LABEL brig.start="a shell command line"   run in the background, as the sandbox's default user, tagged brig-start
 *   LABEL brig.ready-port="49999"              create answers once a server accepts connections on this port inside the sandbox
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';

export const BUILT_IN_TEMPLATES = ['base', 'code-interpreter', 'desktop'] as const;

/** The labels of a template's start command and the port that says it is ready. */
export const START_LABEL = 'brig.start';
export const READY_PORT_LABEL = 'brig.ready-port';

export type TemplateName = (typeof BUILT_IN_TEMPLATES)[number];

export function isBuiltInTemplate(name: string): name is TemplateName {
  return (BUILT_IN_TEMPLATES as readonly string[]).includes(name);
}

/** The template's Dockerfile text, from the directory the caller knows (dist/templates beside the bundle). */
export function templateDockerfile(name: TemplateName, templatesDir: string): Promise<string> {
  return fs.readFile(join(templatesDir, `${name}.Dockerfile`), 'utf8');
}

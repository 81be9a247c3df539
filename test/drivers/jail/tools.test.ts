import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runBrig, tempWorkspace } from '../../helpers/brig.ts';

/**
 * Tools from outside the system directories: a program brought in by path
 * comes with the shared library it links (found by ldd, not visible to the
 * jail otherwise), and a directory brings its whole tree, its bin/ on PATH.
 * The program and its library are compiled here, in a directory of their own.
 */
describe('policy tools from outside the system directories', () => {
  const scratch = tempWorkspace('brig-tools-');
  const toolchain = join(scratch.dir, 'toolchain');
  const workspace = join(scratch.dir, 'project');

  before(() => {
    mkdirSync(join(toolchain, 'bin'), { recursive: true });
    mkdirSync(join(toolchain, 'lib'));
    mkdirSync(workspace);
    writeFileSync(join(scratch.dir, 'greet.c'), 'const char *greeting(void) { return "hello from a library outside the jail\\n"; }\n');
    writeFileSync(join(scratch.dir, 'main.c'), '#include <stdio.h>\nconst char *greeting(void);\nint main(void) { fputs(greeting(), stdout); return 0; }\n');
    execFileSync('cc', ['-shared', '-fPIC', '-o', join(toolchain, 'lib', 'libbrigtest.so'), join(scratch.dir, 'greet.c')]);
    execFileSync('cc', ['-o', join(toolchain, 'bin', 'greet'), join(scratch.dir, 'main.c'), `-L${join(toolchain, 'lib')}`, '-lbrigtest', `-Wl,-rpath,${join(toolchain, 'lib')}`]);
  });

  after(() => scratch.remove());

  const policyFile = (tools: string[]) => {
    const file = join(scratch.dir, `policy-${tools.length}-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify({ tools }));
    return file;
  };

  test('a program by path comes with the library it links, and is on PATH', async () => {
    const result = await runBrig(['run', '--policy', policyFile([join(toolchain, 'bin', 'greet')]), '--', 'sh', '-c', 'greet; ls "$(dirname "$(command -v greet)")/../lib"'], { cwd: workspace });
    assert.equal(result.stderr, '');
    assert.equal(result.stdout, 'hello from a library outside the jail\nlibbrigtest.so\n');
  });

  test('without the tool, neither the program nor its library is there', async () => {
    const result = await runBrig(['run', '--', 'sh', '-c', `test -e ${join(toolchain, 'bin', 'greet')} || test -e ${join(toolchain, 'lib')} || echo absent`], { cwd: workspace });
    assert.equal(result.stdout, 'absent\n');
  });

  test('a directory brings its whole tree, its bin/ on PATH', async () => {
    const result = await runBrig(['run', '--policy', policyFile([toolchain]), '--', 'greet'], { cwd: workspace });
    assert.equal(result.stderr, '');
    assert.equal(result.stdout, 'hello from a library outside the jail\n');
  });
});

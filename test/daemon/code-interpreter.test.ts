import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Sandbox } from '@e2b/code-interpreter';
import type { Browser } from 'playwright-core';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { seedTemplateImage } from '../helpers/images.ts';
import { chromiumSkip, launchChromium } from '../helpers/browser.ts';

/**
 * The real @e2b/code-interpreter SDK, unchanged, against brig serve and
 * brig's code-interpreter template (E2B's code-interpreter-v1): runCode
 * through the sandbox's port 49999, its results, state, errors, languages
 * and timeouts; and the template's Jupyter notebook in a real browser.
 */

const API_KEY = 'code-interpreter-key';
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

describe('@e2b/code-interpreter against brig', { skip: process.getuid?.() !== 0 ? 'image sandboxes need root' : false }, () => {
  const state = tempWorkspace('brig-code-interpreter-');
  let daemon: RunningDaemon;
  let sandbox: Sandbox;

  before(async () => {
    seedTemplateImage(state.dir, 'code-interpreter');
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
    // The SDK's defaults: template code-interpreter-v1, brig's code-interpreter.
    sandbox = await Sandbox.create({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url });
  });
  after(async () => {
    await sandbox?.kill().catch(() => {});
    await daemon.stop();
    state.remove();
  });

  test("runCode('1+1') gives 2", async () => {
    const execution = await sandbox.runCode('1+1');
    assert.equal(execution.text, '2');
    assert.equal(execution.error, undefined);
  });

  test('a variable survives between calls; stdout and stderr stream to their callbacks', async () => {
    await sandbox.runCode('x = 40');
    const seen: string[] = [];
    const execution = await sandbox.runCode('import sys\nprint("out", x)\nprint("err", file=sys.stderr)\nx + 2', {
      onStdout: (message) => void seen.push(`stdout:${message.line}`),
      onStderr: (message) => void seen.push(`stderr:${message.line}`),
    });
    assert.equal(execution.text, '42');
    assert.deepEqual(execution.logs.stdout, ['out 40\n']);
    assert.deepEqual(execution.logs.stderr, ['err\n']);
    assert.deepEqual(seen, ['stdout:out 40\n', 'stderr:err\n']);
  });

  test('a matplotlib plot comes back as a PNG that decodes', async () => {
    const execution = await sandbox.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()');
    const png = execution.results.find((result) => result.png)?.png;
    assert.ok(png, `a PNG result: ${JSON.stringify(execution.results.map((result) => result.formats()))}`);
    const bytes = Buffer.from(png, 'base64');
    assert.deepEqual(bytes.subarray(0, 8), PNG_SIGNATURE);
    // IHDR: width and height of a real figure.
    assert.ok(bytes.readUInt32BE(16) > 100 && bytes.readUInt32BE(20) > 100);
  });

  test('rich results: HTML from pandas, JSON', async () => {
    const frame = await sandbox.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2]})');
    assert.match(frame.results[0]?.html ?? '', /<table/);
    const json = await sandbox.runCode('from IPython.display import JSON\nJSON({"k": [1, 2]})');
    assert.deepEqual(json.results[0]?.json, { k: [1, 2] });
  });

  test('an exception comes back as an error with its name, value and traceback', async () => {
    const execution = await sandbox.runCode('def f():\n    raise ValueError("bad value")\nf()');
    assert.equal(execution.error?.name, 'ValueError');
    assert.equal(execution.error?.value, 'bad value');
    assert.match(execution.error?.traceback ?? '', /f\(\)/);
    // The context goes on.
    assert.equal((await sandbox.runCode('x')).text, '40');
  });

  test('a JavaScript cell runs, with state of its own context; TypeScript and bash too', async () => {
    const js = await sandbox.createCodeContext({ language: 'js' });
    assert.equal((await sandbox.runCode('const n = 40; n + 2', { context: js })).text, '42');
    assert.equal((await sandbox.runCode('n * 2', { context: js })).text, '80');
    const ts = await sandbox.runCode('const t: number = 5; t * 3', { language: 'ts' });
    assert.equal(ts.text, '15');
    const bash = await sandbox.runCode('echo hello from bash', { language: 'bash' });
    assert.deepEqual(bash.logs.stdout.join(''), 'hello from bash\n');
    const contexts = await sandbox.listCodeContexts();
    assert.ok(contexts.some((context) => context.id === js.id));
    await sandbox.removeCodeContext(js);
    assert.ok(!(await sandbox.listCodeContexts()).some((context) => context.id === js.id));
  });

  test('a timeout interrupts the kernel, and the context is usable after', async () => {
    await assert.rejects(sandbox.runCode('import time\ntime.sleep(60)', { timeoutMs: 2000 }), /timed out|timeout/i);
    const after = await sandbox.runCode('x + 1');
    assert.equal(after.text, '41');
  });

  test('env vars apply to one execution', async () => {
    const execution = await sandbox.runCode('import os\nos.environ.get("BRIG_TEST_VAR")', { envs: { BRIG_TEST_VAR: 'set' } });
    assert.equal(execution.text, 'set', "E2B's server gives a string's value without its quotes");
    assert.equal((await sandbox.runCode('import os\nos.environ.get("BRIG_TEST_VAR")')).text, undefined);
  });

  describe('the notebook UI in a browser', { skip: chromiumSkip }, () => {
    let browser: Browser;
    before(async () => {
      browser = await launchChromium();
    });
    after(async () => {
      await browser?.close();
    });

    test("Jupyter's notebook opens through the sandbox's port 8888, and a cell runs on its kernel's WebSocket", async () => {
      const notebook = { cells: [{ cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source: ['print(6 * 7)'] }], metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } }, nbformat: 4, nbformat_minor: 5 };
      await sandbox.files.write('/home/user/brig.ipynb', JSON.stringify(notebook));
      const page = await browser.newPage();
      try {
        await page.goto(`http://${sandbox.getHost(8888)}/tree?brig_traffic_token=${sandbox.trafficAccessToken}`);
        await page.waitForSelector('#notebook_list');
        await page.goto(`http://${sandbox.getHost(8888)}/notebooks/brig.ipynb`);
        await page.waitForSelector('#kernel_indicator_icon.kernel_idle_icon');
        await page.click('.input_area');
        await page.keyboard.press('Shift+Enter');
        await page.waitForFunction(() => document.querySelector('.output_subarea')?.textContent?.includes('42'));
        if (process.env.BRIG_SCREENSHOTS) await page.screenshot({ path: `${process.env.BRIG_SCREENSHOTS}/notebook.png` });
      } finally {
        await page.close();
      }
    });
  });
});

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runBrig, tempWorkspace } from '../helpers/brig.ts';
import { seedTemplateImage } from '../helpers/images.ts';

/**
 * The code-interpreter template (src/images/templates/code-interpreter):
 * built for real, then its start command run in a `brig run --image` jail
 * and E2B's code-interpreter API spoken to it from inside by a small Python
 * client (CLIENT below), which reports what each call gave as one JSON
 * object; the tests check that report, and the notebook UI beside it.
 */

const root = process.getuid?.() === 0;
const mmdebstrap = spawnSync('mmdebstrap', ['--version']).status === 0;
const skip = !root ? 'image builds and jails need root' : !mmdebstrap ? 'mmdebstrap is not installed' : false;

// Runs inside the jail, as `user`: waits for the start command's server, then calls the API.
const CLIENT = String.raw`
import base64, http.client, json, os, socket, sys, time

START_PID = int(sys.argv[1])
report = {}

def alive():
    return os.path.exists(f'/proc/{START_PID}')

# The server opens its port once the default Python kernel is ready; no deadline here, only "is it still starting".
while True:
    try:
        socket.create_connection(('127.0.0.1', 49999)).close()
        break
    except OSError:
        if not alive():
            print(json.dumps({'startFailed': open('/tmp/code-interpreter.log').read()}))
            sys.exit(0)
        time.sleep(0.1)

def call(method, path, body=None, raw=None, port=49999, headers=None):
    conn = http.client.HTTPConnection('127.0.0.1', port)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    conn.request(method, path, body=data, headers={'Content-Type': 'application/json', **(headers or {})})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    return response.status, text

def run(code, **fields):
    status, text = call('POST', '/execute', {'code': code, **fields})
    lines = [json.loads(line) for line in text.splitlines() if line]
    main = [m.get('text') for m in lines if m['type'] == 'result' and m.get('is_main_result')]
    return {
        'status': status,
        'types': [m['type'] for m in lines if m['type'] != 'keepalive'],
        'text': main[0] if main else None,
        'stdout': ''.join(m['text'] for m in lines if m['type'] == 'stdout'),
        'error': next((m for m in lines if m['type'] == 'error'), None),
        'results': [m for m in lines if m['type'] == 'result'],
    }

report['health'] = call('GET', '/health')
report['onePlusOne'] = run('1+1')
report['print'] = run('print("hello")')
plot = run('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()')
png = next((r['png'] for r in plot['results'] if r.get('png')), None)
report['plot'] = {'types': plot['types'], 'pngSignature': base64.b64decode(png)[:8].hex() if png else None}
report['persist'] = [run('x = 41'), run('x + 1')]
report['exception'] = run('1/0')
report['envVars'] = [run('import os; os.environ.get("BRIG_T", "unset")', env_vars={'BRIG_T': 'yes'}), run('os.environ.get("BRIG_T", "unset")')]

status, text = call('POST', '/contexts', {'language': 'javascript'})
js = json.loads(text)
report['jsContext'] = {'status': status, 'context': js}
report['js'] = [run('const x = 40; x + 2', context_id=js['id']), run('console.log("from node"); x', context_id=js['id']),
                run('throw new TypeError("nope")', context_id=js['id'])]
report['ts'] = run('const n: number = 21; n * 2', language='typescript')
report['bash'] = [run('cd /tmp; X=5; echo hi', language='bash'), run('echo "$X $PWD"', language='bash'), run('false', language='bash')]

report['badJson'] = call('POST', '/execute', raw='{not json')
report['unknownContext'] = call('POST', '/execute', {'code': '1', 'context_id': 'nope'})
report['unknownLanguage'] = call('POST', '/execute', {'code': '1', 'language': 'cobol'})
report['contexts'] = json.loads(call('GET', '/contexts')[1])

# A client that leaves mid-cell: the cell is interrupted (done is never set, x of before is kept: not a restart) and the context answers the next call.
conn = http.client.HTTPConnection('127.0.0.1', 49999)
conn.request('POST', '/execute', body=json.dumps({'code': 'import time\ntime.sleep(30)\ndone = True'}), headers={'Content-Type': 'application/json'})
response = conn.getresponse()
first = response.readline()
conn.sock.shutdown(socket.SHUT_RDWR)
conn.close()
report['disconnect'] = {'first': json.loads(first)['type'], 'after': run('"done" in globals(), x'), 'again': run('1+1')}

report['deleted'] = [call('DELETE', '/contexts/' + js['id'])[0], call('POST', '/execute', {'code': '1', 'context_id': js['id']})[0]]
status, text = call('POST', '/contexts', {'language': 'python', 'cwd': '/tmp'})
py = json.loads(text)
run('y = 1', context_id=py['id'])
report['restart'] = [call('POST', f'/contexts/{py["id"]}/restart')[0], run('import os; (os.getcwd(), "y" in globals())', context_id=py['id'])]

# The notebook UI, reached under a host name that is not local (as through a proxy), once it listens (or is seen to have died)
def notebook_running():
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            cmdline = open(f'/proc/{pid}/cmdline', 'rb').read()
            # "jupyter notebook", then the jupyter-notebook it execs
            if b'jupyter' in cmdline and b'notebook' in cmdline:
                return True
        except OSError:
            pass
    return False

while True:
    try:
        specs = call('GET', '/api/kernelspecs', port=8888, headers={'Host': '8888-sandbox.brig.test'})
        tree = call('GET', '/tree', port=8888, headers={'Host': '8888-sandbox.brig.test'})
        break
    except OSError:
        if not notebook_running():
            specs = tree = (0, open('/tmp/jupyter-notebook.log').read())
            break
        time.sleep(0.1)
report['notebook'] = {'specs': specs[0], 'kernels': sorted(json.loads(specs[1])['kernelspecs']) if specs[0] == 200 else specs[1], 'tree': tree[0]}
print(json.dumps(report))
`;

interface Run {
  status: number;
  types: string[];
  text: string | null;
  stdout: string;
  error: { name: string; value: string; traceback: string } | null;
}

describe('the code-interpreter template', { skip }, () => {
  let work: { dir: string; remove: () => void };
  let stateDir: { dir: string; remove: () => void };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the client's report, checked field by field below
  let report: any;
  before(async () => {
    // The state apart from the workspace: the jail gets the workspace read-write, and the store's layers are the cache's hard links.
    stateDir = tempWorkspace('brig-code-interpreter-state-');
    work = tempWorkspace('brig-code-interpreter-');
    const state = join(stateDir.dir, 'state');
    mkdirSync(state, { recursive: true });
    seedTemplateImage(state, 'code-interpreter');
    writeFileSync(join(work.dir, 'client.py'), CLIENT);
    // The start command in the background, the client in front; the jail (and all it started) ends with the client.
    const script = `/opt/code-interpreter/start.sh & python3 ${join(work.dir, 'client.py')} $!; kill $! 2>/dev/null; wait`;
    const result = await runBrig(['run', '--image', 'code-interpreter', '--workspace', work.dir, '--', 'bash', '-c', script], { env: { ...process.env, BRIG_STATE_DIR: state } });
    assert.equal(result.code, 0, result.stderr);
    report = JSON.parse(result.stdout);
    assert.equal(report.startFailed, undefined, report.startFailed);
  });
  after(() => {
    stateDir?.remove();
    work?.remove();
  });

  test('1+1 in the default Python context: a main result 2, the execution count, then the end', () => {
    assert.deepEqual(report.health, [200, '"OK"']);
    const run: Run = report.onePlusOne;
    assert.equal(run.status, 200);
    assert.equal(run.text, '2');
    assert.deepEqual(run.types, ['number_of_executions', 'result', 'end_of_execution']);
    assert.equal((report.print as Run).stdout, 'hello\n');
  });

  test('a matplotlib plot comes back as a PNG', () => {
    assert.equal(report.plot.pngSignature, '89504e470d0a1a0a');
  });

  test('variables live from one execution to the next; env_vars last one execution', () => {
    assert.equal((report.persist[1] as Run).text, '42');
    assert.equal((report.envVars[0] as Run).text, 'yes');
    assert.equal((report.envVars[1] as Run).text, 'unset');
  });

  test('an exception is an error with its name, value and a plain-text traceback', () => {
    const error = (report.exception as Run).error;
    assert.equal(error?.name, 'ZeroDivisionError');
    assert.equal(error?.value, 'division by zero');
    assert.match(error?.traceback ?? '', /1\/0[\s\S]*ZeroDivisionError: division by zero/);
    assert.doesNotMatch(error?.traceback ?? '', /\x1b\[/); // eslint-disable-line no-control-regex
  });

  test('JavaScript in a created context: the last expression is the result, const survives the cell, errors are errors', () => {
    assert.equal(report.jsContext.status, 200);
    assert.equal(report.jsContext.context.language, 'javascript');
    const [first, second, third] = report.js as Run[];
    assert.equal(first?.text, '42');
    assert.equal(second?.text, '40');
    assert.equal(second?.stdout, 'from node\n');
    assert.equal(third?.error?.name, 'TypeError');
    assert.equal(third?.error?.value, 'nope');
  });

  test('TypeScript and bash run in their default contexts; bash keeps variables and its directory', () => {
    assert.equal((report.ts as Run).text, '42');
    const [first, second, failing] = report.bash as Run[];
    assert.equal(first?.stdout, 'hi\n');
    assert.equal(second?.stdout, '5 /tmp\n');
    assert.equal(failing?.error?.value, '1');
  });

  test('bad requests are 4xx with a JSON body', () => {
    for (const [status, body] of [report.badJson, report.unknownContext, report.unknownLanguage] as Array<[number, string]>) {
      assert.ok(status >= 400 && status < 500, `${status} ${body}`);
      assert.equal(typeof JSON.parse(body).message, 'string');
    }
    assert.equal(report.unknownContext[0], 404);
  });

  test('a client that leaves mid-execution: the cell is interrupted and the context answers again', () => {
    assert.equal(report.disconnect.first, 'number_of_executions');
    assert.equal((report.disconnect.after as Run).text, '(False, 41)');
    assert.equal((report.disconnect.again as Run).text, '2');
  });

  test('contexts are listed, deleted and restarted (in their own directory, their variables gone)', () => {
    const languages = (report.contexts as Array<{ language: string }>).map((context) => context.language).sort();
    assert.deepEqual(languages, ['bash', 'javascript', 'python', 'typescript']);
    assert.deepEqual(report.deleted, [200, 404]);
    assert.equal(report.restart[0], 200);
    assert.equal((report.restart[1] as Run).text, "('/tmp', False)");
  });

  test('the notebook UI answers on 8888 under a foreign host name, with brig\'s kernels beside Python', () => {
    assert.equal(report.notebook.specs, 200);
    assert.equal(report.notebook.tree, 200);
    assert.deepEqual(report.notebook.kernels, ['bash', 'javascript', 'python3', 'typescript']);
  });
});

// The node side of brig's JavaScript and TypeScript kernels (kernels.py):
// one persistent process per context, so variables live from cell to cell.
//
// Line protocol, JSON per line, on two pipes whose numbers the kernel passes
// in BRIG_REQUEST_FD and BRIG_REPLY_FD (stdin stays the user's):
//   request  {"code": "...", "lang": "javascript" | "typescript"}
//   reply    {"status": "ok", "text": "..."}            text: the last expression, inspected (absent when undefined)
//            {"status": "error", "name", "value", "traceback"}
// The user's console output goes to the real stdout and stderr. A reply is
// written only after everything the cell wrote: pipe writes are synchronous
// on Linux, so the kernel finds the cell's output in its pipes before it.
//
// Cells run in node's own global context (as `node`'s REPL does), rewritten
// first so they behave like a REPL: top-level let, const and class become var
// (a cell can be run twice), imports become require, import() finds modules
// from the working directory, and a cell with a top-level await runs as an async function whose declarations are hoisted
// to globals and whose last expression is its value.
import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import util from 'node:util';
import vm from 'node:vm';
import { createRequire, isBuiltin } from 'node:module';
import { pathToFileURL } from 'node:url';

const requestFd = Number(process.env.BRIG_REQUEST_FD);
const replyFd = Number(process.env.BRIG_REPLY_FD);
delete process.env.BRIG_REQUEST_FD;
delete process.env.BRIG_REPLY_FD;

// Debian's node-typescript (/usr/share/nodejs, which require() searches and import does not) parses and transpiles; without it, cells run as written.
let ts;
try {
  ts = createRequire(import.meta.url)('typescript');
} catch {
  ts = undefined;
}

// What a REPL offers its cells: require and module as if from a file in the working directory.
globalThis.require = createRequire(`${process.cwd()}/[repl]`);
globalThis.module = { exports: {}, require: globalThis.require };
globalThis.exports = globalThis.module.exports;

// A timer or promise that fails after its cell ended must not end the context: say so on stderr, as node's REPL does.
process.on('uncaughtException', (error) => process.stderr.write(`Uncaught ${util.inspect(error)}\n`));
process.on('unhandledRejection', (reason) => process.stderr.write(`Uncaught (in promise) ${util.inspect(reason)}\n`));

// An interrupt (SIGINT from the kernel) while a cell awaits: the wait is abandoned; synchronous code is stopped by breakOnSigint.
let abandon;
process.on('SIGINT', () => abandon?.(Object.assign(new Error('Execution interrupted'), { name: 'KeyboardInterrupt' })));

function reply(message) {
  fs.writeSync(replyFd, `${JSON.stringify(message)}\n`);
}

/** A stack without the frames of this driver and of node's vm: the user's own code is what is left. */
function userStack(stack) {
  return stack.split('\n').filter((line) => !/^\s+at .*(node:vm|node:internal|node_repl\.mjs|sigintHandlersWrap)/.test(line)).join('\n');
}

function errorReply(error) {
  if (error instanceof Error) {
    return { status: 'error', name: error.name, value: error.message, traceback: userStack(error.stack ?? `${error.name}: ${error.message}`) };
  }
  return { status: 'error', name: 'Error', value: `Uncaught ${util.inspect(error)}`, traceback: `Uncaught ${util.inspect(error)}` };
}

/** TypeScript to JavaScript, types erased; imports are kept, even unused (a later cell may use them), for rewrite() to turn into requires. */
function transpile(code) {
  if (ts === undefined) throw Object.assign(new Error('TypeScript needs Debian\'s node-typescript package, which is not installed'), { name: 'UnsupportedLanguage' });
  // Debian's TypeScript is 4.8 (preserveValueImports); 5.x renamed the option
  const keepImports = Number(ts.versionMajorMinor.split('.')[0]) >= 5 ? { verbatimModuleSyntax: true } : { preserveValueImports: true };
  const out = ts.transpileModule(code, {
    reportDiagnostics: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, isolatedModules: true, ...keepImports },
  });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error && d.code !== 1375 && d.code !== 1378);
  if (errors.length > 0) {
    const text = errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('\n');
    throw Object.assign(new Error(text), { name: 'TSError' });
  }
  return out.outputText.replace(/^export \{\};\s*$/m, '');
}

const FUNCTION_KINDS = () => new Set([ts.SyntaxKind.FunctionDeclaration, ts.SyntaxKind.FunctionExpression, ts.SyntaxKind.ArrowFunction, ts.SyntaxKind.MethodDeclaration, ts.SyntaxKind.Constructor, ts.SyntaxKind.GetAccessor, ts.SyntaxKind.SetAccessor, ts.SyntaxKind.ClassStaticBlockDeclaration]);

/** Does the statement await outside any function of its own (a top-level await, or for await)? */
function awaitsAtTopLevel(node, functions) {
  if (node.kind === ts.SyntaxKind.AwaitExpression) return true;
  if (node.kind === ts.SyntaxKind.ForOfStatement && node.awaitModifier !== undefined) return true;
  if (functions.has(node.kind)) return false;
  return ts.forEachChild(node, (child) => (awaitsAtTopLevel(child, functions) ? true : undefined)) === true;
}

/** The names a binding (identifier or destructuring pattern) declares. */
function boundNames(name, into) {
  if (ts.isIdentifier(name)) into.push(name.text);
  else for (const element of name.elements) if (!ts.isOmittedExpression(element)) boundNames(element.name, into);
  return into;
}

/** An import declaration as requires: var x = default-or-module, var {a: b} = module, var ns = module. */
function importAsRequire(statement, text) {
  const from = statement.moduleSpecifier.getText(text);
  const clause = statement.importClause;
  if (clause === undefined) return `require(${from});`;
  if (clause.isTypeOnly) return '';
  const parts = [];
  const module = `require(${from})`;
  if (clause.name !== undefined) parts.push(`var ${clause.name.text} = ((m) => (m && m.__esModule ? m.default : m))(${module});`);
  const bindings = clause.namedBindings;
  if (bindings !== undefined && ts.isNamespaceImport(bindings)) parts.push(`var ${bindings.name.text} = ${module};`);
  if (bindings !== undefined && ts.isNamedImports(bindings)) {
    const names = bindings.elements.filter((e) => !e.isTypeOnly).map((e) => (e.propertyName ? `${e.propertyName.text}: ${e.name.text}` : e.name.text));
    if (names.length > 0) parts.push(`var { ${names.join(', ')} } = ${module};`);
  }
  return parts.join(' ');
}

/**
 * The cell as a script for vm: { source, async }. Edits are made on the
 * text at the parsed statements' positions, so everything else (comments,
 * formatting, line numbers of a synchronous cell) is left as written.
 */
function rewrite(original) {
  if (ts === undefined) return { source: original, async: false };
  // First import() (its edits would overlap those below), then the statements of what that gives
  let code = original;
  const imports = dynamicImports(ts.createSourceFile('cell.js', code, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS), []);
  for (const keyword of imports.reverse()) code = code.slice(0, keyword.getStart()) + '__brigImport' + code.slice(keyword.end);
  const file = ts.createSourceFile('cell.js', code, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const functions = FUNCTION_KINDS();
  const statements = file.statements;
  const isAsync = statements.some((statement) => awaitsAtTopLevel(statement, functions));
  const edits = []; // [start, end, replacement]
  const hoisted = [];
  statements.forEach((statement, index) => {
    const start = statement.getStart(file);
    if (ts.isImportDeclaration(statement)) {
      edits.push([start, statement.end, importAsRequire(statement, file)]);
      return;
    }
    if (ts.isVariableStatement(statement)) {
      const list = statement.declarationList;
      const names = list.declarations.flatMap((d) => boundNames(d.name, []));
      if (!isAsync) {
        // let/const → var: the keyword is the list's first token
        const keywordStart = list.getStart(file);
        const keyword = code.slice(keywordStart).match(/^(let|const)\b/);
        if (keyword) edits.push([keywordStart, keywordStart + keyword[1].length, 'var']);
        return;
      }
      // Async: the declarations are hoisted out of the wrapper, what is left is assignments
      hoisted.push(...names);
      const assignments = list.declarations.filter((d) => d.initializer !== undefined).map((d) => `(${d.name.getText(file)} = ${d.initializer.getText(file)})`);
      edits.push([start, statement.end, assignments.length > 0 ? `${assignments.join(', ')};` : ';']);
      return;
    }
    if (ts.isClassDeclaration(statement) && statement.name !== undefined) {
      // A class expression assigned to a var can be declared again by a later cell
      if (!isAsync) edits.push([start, start, `var ${statement.name.text} = `], [statement.end, statement.end, ';']);
      else {
        hoisted.push(statement.name.text);
        edits.push([start, start, `${statement.name.text} = `], [statement.end, statement.end, ';']);
      }
      return;
    }
    if (isAsync && ts.isFunctionDeclaration(statement) && statement.name !== undefined) {
      // Hoisted inside the wrapper as well; copied out so later cells see it
      hoisted.push(statement.name.text);
      edits.push([statement.end, statement.end, ` globalThis[${JSON.stringify(statement.name.text)}] = ${statement.name.text};`]);
      return;
    }
    if (isAsync && index === statements.length - 1 && ts.isExpressionStatement(statement)) {
      edits.push([start, statement.end, `return (${statement.expression.getText(file)});`]);
    }
  });
  let source = code;
  for (const [start, end, replacement] of edits.sort((a, b) => b[0] - a[0] || b[1] - a[1])) source = source.slice(0, start) + replacement + source.slice(end);
  if (!isAsync) return { source, async: false };
  const declare = hoisted.length > 0 ? `var ${[...new Set(hoisted)].join(', ')}; ` : '';
  return { source: `${declare}(async () => {\n${source}\n})()`, async: true };
}

/**
 * import() in a cell (rewritten to call this: vm scripts cannot import
 * without --experimental-vm-modules): builtins as they are, anything else
 * found as require() finds it, from the working directory.
 */
globalThis.__brigImport = (specifier) => {
  if (specifier.startsWith('node:') || isBuiltin(specifier)) return import(specifier);
  return import(pathToFileURL(globalThis.require.resolve(specifier)).href);
};

/** Where the cell calls import(): the keyword's position, anywhere in the tree. */
function dynamicImports(node, into) {
  if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) into.push(node.expression);
  // (forEachChild stops at the first child whose callback returns something)
  ts.forEachChild(node, (child) => {
    dynamicImports(child, into);
  });
  return into;
}

async function run(request) {
  const code = request.lang === 'typescript' ? transpile(String(request.code)) : String(request.code);
  const { source, async } = rewrite(code);
  const script = new vm.Script(source, { filename: '<cell>' });
  let value = script.runInThisContext({ breakOnSigint: true, displayErrors: true });
  if (async) {
    value = await new Promise((resolve, reject) => {
      abandon = reject;
      Promise.resolve(value).then(resolve, reject);
    }).finally(() => (abandon = undefined));
  }
  return value;
}

// A socket, not fs.createReadStream: a threadpool read blocked on the pipe would keep process.exit() from ever returning.
const lines = readline.createInterface({ input: new net.Socket({ fd: requestFd, readable: true, writable: false }), crlfDelay: Infinity });
// One cell at a time, in order: the next request waits for the last reply.
let queue = Promise.resolve();
lines.on('line', (line) => {
  queue = queue.then(async () => {
    try {
      const value = await run(JSON.parse(line));
      reply(value === undefined ? { status: 'ok' } : { status: 'ok', text: util.inspect(value, { colors: false, depth: 4 }) });
    } catch (error) {
      reply(errorReply(error));
    }
  });
});
// The kernel went away: so do we.
lines.on('close', () => process.exit(0));

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../../src/images/dockerfile.ts';
import { processWord, splitWords } from '../../src/images/dockerfile-words.ts';
import { isBrigError } from '../../src/protocol/index.ts';

/** The instructions after FROM, without line and text. */
function body(source: string): unknown[] {
  return parseDockerfile(`FROM scratch\n${source}`).instructions.slice(1).map(({ line: _line, text: _text, ...rest }) => rest);
}

function refused(source: string, pattern: RegExp): void {
  try {
    parseDockerfile(source);
  } catch (error) {
    assert.ok(isBrigError(error), String(error));
    assert.equal(error.code, 'BRIG_DOCKERFILE_INVALID');
    assert.match(error.message, pattern);
    assert.ok(error.hint.length > 10);
    return;
  }
  assert.fail(`accepted: ${source}`);
}

const vars = new Map([
  ['A', 'alpha'],
  ['EMPTY', ''],
  ['SPACED', 'a b'],
]);

test('FROM takes an image, an optional AS name, and no other flag', () => {
  assert.deepEqual(parseDockerfile('FROM debian:bookworm').instructions[0], { line: 1, text: 'FROM debian:bookworm', kind: 'FROM', image: 'debian:bookworm' });
  assert.equal(parseDockerfile('from debian:bookworm-slim AS build').instructions[0]?.kind, 'FROM');
  assert.deepEqual(parseDockerfile('FROM x as build').instructions[0], { line: 1, text: 'FROM x as build', kind: 'FROM', image: 'x', stage: 'build' });
  refused('FROM --platform=linux/arm64 debian', /--platform is not supported/);
  refused('FROM a b', /FROM takes an image/);
  refused('FROM', /FROM takes an image/);
});

test('a second FROM is refused: multi-stage builds are out', () => {
  refused('FROM debian AS build\nRUN make\nFROM scratch\nCOPY --from=build /a /a', /line 3: a second FROM/);
  refused('FROM scratch\nCOPY --from=build /a /a', /line 2: the flag --from/);
});

test('only ARG may come before FROM; those ARGs are kept apart', () => {
  const parsed = parseDockerfile('ARG SUITE=bookworm\nFROM debian:${SUITE}\nARG SUITE');
  assert.deepEqual(parsed.globalArgs, [{ name: 'SUITE', value: 'bookworm' }]);
  assert.equal(parsed.instructions.length, 2);
  refused('ENV A=1\nFROM scratch', /line 1: ENV before FROM/);
  refused('# just a comment\n', /no FROM/);
  refused('', /no FROM/);
});

test('comments, blank lines and parser directives are dropped; line numbers stay right', () => {
  const parsed = parseDockerfile('# syntax=docker/dockerfile:1\n# escape=\\\n\n# a comment\nFROM scratch\n\n  # indented comment\nENV A=1');
  assert.deepEqual(parsed.instructions.map((one) => one.line), [5, 8]);
  assert.deepEqual(parsed.warnings, []);
  refused('# escape=`\nFROM scratch', /escape directive "`" is not supported/);
});

test('a directive after the first comment or instruction is a plain comment', () => {
  const parsed = parseDockerfile('# hello\n# escape=`\nFROM scratch');
  assert.equal(parsed.instructions.length, 1);
});

test('continuation lines join; comment and blank lines inside a continuation are skipped', () => {
  const [run] = body('RUN apt-get update && \\\n    # a comment inside\n\n    apt-get install -y curl');
  assert.deepEqual(run, { kind: 'RUN', command: { shell: 'apt-get update &&     apt-get install -y curl' } });
  const parsed = parseDockerfile('FROM scratch\nENV A=1 \\\n  B=2\nUSER x');
  assert.deepEqual(parsed.instructions.map((one) => one.line), [1, 2, 4]);
  assert.equal(parsed.instructions[1]?.text, 'ENV A=1   B=2');
});

test('a trailing continuation at the end of the file still ends the instruction', () => {
  assert.deepEqual(body('RUN true \\'), [{ kind: 'RUN', command: { shell: 'true' } }]);
});

test('CRLF line endings and a byte-order mark are accepted', () => {
  const parsed = parseDockerfile('\uFEFFFROM scratch\r\nENV A=1\r\n');
  assert.deepEqual(parsed.instructions.map((one) => one.kind), ['FROM', 'ENV']);
});

test('RUN, CMD and ENTRYPOINT: a JSON array is the exec form, anything else the shell form', () => {
  assert.deepEqual(body('RUN ["/bin/echo", "hi there"]'), [{ kind: 'RUN', command: { exec: ['/bin/echo', 'hi there'] } }]);
  assert.deepEqual(body('RUN echo $HOME'), [{ kind: 'RUN', command: { shell: 'echo $HOME' } }]);
  assert.deepEqual(body('CMD ["python3", "-m", "http.server"]'), [{ kind: 'CMD', command: { exec: ['python3', '-m', 'http.server'] } }]);
  assert.deepEqual(body('ENTRYPOINT exec top -b'), [{ kind: 'ENTRYPOINT', command: { shell: 'exec top -b' } }]);
  // not valid JSON, or not all strings: the shell form, as Docker does
  assert.deepEqual(body('CMD [not json]'), [{ kind: 'CMD', command: { shell: '[not json]' } }]);
  assert.deepEqual(body('CMD ["a", 1]'), [{ kind: 'CMD', command: { shell: '["a", 1]' } }]);
  refused('FROM scratch\nRUN', /RUN needs a command/);
  refused('FROM scratch\nCMD', /CMD needs a command/);
});

test('RUN --network: default, none or host; other RUN flags are refused', () => {
  assert.deepEqual(body('RUN --network=none make'), [{ kind: 'RUN', command: { shell: 'make' }, network: 'none' }]);
  refused('FROM scratch\nRUN --network=bridge make', /only default, none or host/);
  refused('FROM scratch\nRUN --network make', /--network needs a value/);
  refused('FROM scratch\nRUN --mount=type=cache,target=/x make', /--mount is not supported/);
});

test('heredocs are refused, a here-string is not', () => {
  refused('FROM scratch\nRUN <<EOF\necho hi\nEOF', /line 2: RUN with a heredoc/);
  refused('FROM scratch\nRUN cat <<-"END" > /f', /heredoc/);
  refused('FROM scratch\nCOPY <<EOF /f', /heredoc/);
  assert.deepEqual(body('RUN bash -c "cat <<< hi"'), [{ kind: 'RUN', command: { shell: 'bash -c "cat <<< hi"' } }]);
});

test('ENV: K=V pairs with quotes kept for later, or the old form K rest-of-line', () => {
  assert.deepEqual(body('ENV A=1 B="two words" C=\'$x\''), [{ kind: 'ENV', pairs: [{ key: 'A', value: '1' }, { key: 'B', value: '"two words"' }, { key: 'C', value: "'$x'" }] }]);
  assert.deepEqual(body('ENV PATH /usr/local/bin:$PATH and more'), [{ kind: 'ENV', pairs: [{ key: 'PATH', value: '/usr/local/bin:$PATH and more' }] }]);
  assert.deepEqual(body('ENV A='), [{ kind: 'ENV', pairs: [{ key: 'A', value: '' }] }]);
  assert.deepEqual(body('ENV A=a\\ b'), [{ kind: 'ENV', pairs: [{ key: 'A', value: 'a\\ b' }] }]);
  refused('FROM scratch\nENV A', /ENV A has no value/);
  refused('FROM scratch\nENV A=1 B', /"B" has no '='/);
  refused('FROM scratch\nENV 1A=x', /not a variable name/);
  refused('FROM scratch\nENV A="open', /line 2: unterminated double quote/);
  refused('FROM scratch\nENV', /ENV needs a name and a value/);
});

test('LABEL: pairs whose keys may have dots and dashes', () => {
  assert.deepEqual(body('LABEL org.opencontainers.image.title="my image" version=1'), [{ kind: 'LABEL', pairs: [{ key: 'org.opencontainers.image.title', value: '"my image"' }, { key: 'version', value: '1' }] }]);
  refused('FROM scratch\nLABEL =x', /empty name/);
});

test('ARG: names with or without defaults, several on a line', () => {
  assert.deepEqual(body('ARG A\nARG B=2 C="x y"'), [
    { kind: 'ARG', args: [{ name: 'A' }] },
    { kind: 'ARG', args: [{ name: 'B', value: '2' }, { name: 'C', value: '"x y"' }] },
  ]);
  refused('FROM scratch\nARG', /ARG needs a name/);
  refused('FROM scratch\nARG a-b=1', /not a variable name/);
});

test('COPY and ADD: sources and a destination, --chown, --chmod, --link; JSON form', () => {
  assert.deepEqual(body('COPY a b /dest/'), [{ kind: 'COPY', sources: ['a', 'b'], dest: '/dest/' }]);
  assert.deepEqual(body('COPY --chown=1000:1000 --chmod=0755 app /app'), [{ kind: 'COPY', sources: ['app'], dest: '/app', chown: '1000:1000', chmod: 0o755 }]);
  assert.deepEqual(body('ADD --link ["my file", "/x y/"]'), [{ kind: 'ADD', sources: ['my file'], dest: '/x y/' }]);
  refused('FROM scratch\nCOPY onlyone', /at least one source and a destination/);
  refused('FROM scratch\nCOPY --chmod=u+x a /a', /not an octal mode/);
  refused('FROM scratch\nCOPY --chown a /a', /--chown needs a value/);
});

test('ADD of a URL or a git remote is refused: a build has no network for it', () => {
  refused('FROM scratch\nADD https://example.com/x.tar.gz /x', /line 2: ADD of a URL \(https:\/\/example.com\/x.tar.gz\)/);
  refused('FROM scratch\nADD git@github.com:a/b.git /b', /ADD of a URL/);
  refused('FROM scratch\nCOPY http://example.com/a /a', /COPY of a URL/);
});

test('WORKDIR, USER and SHELL', () => {
  assert.deepEqual(body('WORKDIR /home/user\nUSER 1000:1000\nSHELL ["/bin/bash", "-eo", "pipefail", "-c"]'), [
    { kind: 'WORKDIR', value: '/home/user' },
    { kind: 'USER', value: '1000:1000' },
    { kind: 'SHELL', shell: ['/bin/bash', '-eo', 'pipefail', '-c'] },
  ]);
  refused('FROM scratch\nSHELL /bin/bash -c', /SHELL must be a JSON array/);
  refused('FROM scratch\nSHELL []', /SHELL must be a JSON array/);
  refused('FROM scratch\nWORKDIR', /WORKDIR needs a value/);
  refused('FROM scratch\nUSER', /USER needs a value/);
});

test('EXPOSE, VOLUME, HEALTHCHECK, STOPSIGNAL, MAINTAINER and ONBUILD are ignored with a warning naming them', () => {
  const parsed = parseDockerfile('FROM scratch\nEXPOSE 80\nVOLUME /data\nHEALTHCHECK CMD true\nSTOPSIGNAL SIGTERM\nMAINTAINER me\nONBUILD RUN x\nENV A=1');
  assert.deepEqual(parsed.instructions.map((one) => one.kind), ['FROM', 'ENV']);
  assert.deepEqual(parsed.warnings.map((one) => [one.line, one.message.split(' ')[0]]), [[2, 'EXPOSE'], [3, 'VOLUME'], [4, 'HEALTHCHECK'], [5, 'STOPSIGNAL'], [6, 'MAINTAINER'], [7, 'ONBUILD']]);
  assert.match(parsed.warnings[0]?.message ?? '', /EXPOSE ignored: /);
});

test('an unknown instruction or a line that is no instruction is refused with its line', () => {
  refused('FROM scratch\n\nFETCH http://x', /line 3: unknown instruction FETCH/);
  refused('FROM scratch\n--flag', /line 2: .* is not an instruction/);
});

test('splitWords splits on whitespace outside quotes and keeps the quotes', () => {
  assert.deepEqual(splitWords('  a "b c"  d\\ e \'f g\'h '), ['a', '"b c"', 'd\\ e', "'f g'h"]);
  assert.deepEqual(splitWords(''), []);
  assert.throws(() => splitWords('a "b'), /unterminated double quote/);
  assert.throws(() => splitWords("a 'b"), /unterminated single quote/);
});

test('processWord substitutes $VAR and ${VAR}; unset is empty; a lone $ stays', () => {
  assert.equal(processWord('$A-${A}x$UNSET.', vars), 'alpha-alphax.');
  assert.equal(processWord('cost: 5$ or $', vars), 'cost: 5$ or $');
  // digits are name characters, as in Docker's lexer: $1 is an (unset) variable
  assert.equal(processWord('$1', vars), '');
  assert.equal(processWord('${A}_${SPACED}', vars), 'alpha_a b');
});

test('processWord: ${VAR:-default}, ${VAR-default}, ${VAR:+alt} and ${VAR+alt} as in sh', () => {
  assert.equal(processWord('${UNSET:-def}', vars), 'def');
  assert.equal(processWord('${EMPTY:-def}', vars), 'def');
  assert.equal(processWord('${EMPTY-def}', vars), '');
  assert.equal(processWord('${A:-def}', vars), 'alpha');
  assert.equal(processWord('${A:+alt}', vars), 'alt');
  assert.equal(processWord('${EMPTY:+alt}', vars), '');
  assert.equal(processWord('${EMPTY+alt}', vars), 'alt');
  assert.equal(processWord('${UNSET+alt}', vars), '');
  assert.equal(processWord('${UNSET:-${A}/x}', vars), 'alpha/x');
  assert.throws(() => processWord('${A#pat}', vars), /unsupported substitution/);
  assert.throws(() => processWord('${A:-x', vars), /missing '}'/);
  assert.throws(() => processWord('${}', vars), /variable name/);
});

test('processWord: quotes removed, single quotes literal, escapes as Docker does', () => {
  assert.equal(processWord('"$A b"', vars), 'alpha b');
  assert.equal(processWord("'$A b'", vars), '$A b');
  assert.equal(processWord('\\$A', vars), '$A');
  assert.equal(processWord('a\\ b', vars), 'a b');
  assert.equal(processWord('"a\\"b\\$A\\\\c\\n"', vars), 'a"b$A\\c\\n');
  assert.equal(processWord('x\\', vars), 'x');
  assert.throws(() => processWord('"open', vars), /unterminated double quote/);
});

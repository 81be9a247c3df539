/**
 * Docker's word rules for Dockerfile arguments: splitting a line into words
 * that keep their quotes (for ENV, LABEL and ARG pairs), and processing one
 * word as Docker's shell lexer does: quotes removed, backslash escapes, and
 * $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:+alt}, ${VAR+alt}
 * substituted from the build's variables. An unset variable is empty, as in
 * Docker. Only the backslash escape character is supported.
 */

/** The reason a word cannot be processed; the parser adds the line number. */
export class WordError extends Error {}

/** Splits on whitespace outside quotes; quotes and escapes stay in the words (Docker's parseWords). */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote = '';
  let inWord = false;
  for (let index = 0; index < text.length; index++) {
    const ch = text[index] as string;
    if (quote === '' && /\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    word += ch;
    if (ch === '\\' && quote !== "'" && index + 1 < text.length) {
      word += text[++index];
    } else if (quote === '' && (ch === '"' || ch === "'")) {
      quote = ch;
    } else if (ch === quote) {
      quote = '';
    }
  }
  if (quote !== '') throw new WordError(`unterminated ${quote === '"' ? 'double' : 'single'} quote`);
  if (inWord) words.push(word);
  return words;
}

/** Substitutes variables and removes quotes and escapes; `vars` says what is set. */
export function processWord(word: string, vars: ReadonlyMap<string, string>): string {
  return new WordLexer(word, vars).word();
}

const NAME_CHAR = /[A-Za-z0-9_]/;

class WordLexer {
  private at = 0;

  constructor(
    private readonly text: string,
    private readonly vars: ReadonlyMap<string, string>,
  ) {}

  /** Reads until `stop` (a closing '}' inside ${...:-word}) or the end. */
  word(stop?: string): string {
    let out = '';
    while (this.at < this.text.length) {
      const ch = this.text[this.at] as string;
      if (stop !== undefined && ch === stop) return out;
      this.at++;
      if (ch === '\\') {
        // a trailing backslash is dropped, as Docker does
        if (this.at < this.text.length) out += this.text[this.at++];
      } else if (ch === "'") {
        out += this.singleQuoted();
      } else if (ch === '"') {
        out += this.doubleQuoted();
      } else if (ch === '$') {
        out += this.dollar();
      } else {
        out += ch;
      }
    }
    if (stop !== undefined) throw new WordError(`missing '${stop}' in ${JSON.stringify(this.text)}`);
    return out;
  }

  private singleQuoted(): string {
    const end = this.text.indexOf("'", this.at);
    if (end === -1) throw new WordError(`unterminated single quote in ${JSON.stringify(this.text)}`);
    const inside = this.text.slice(this.at, end);
    this.at = end + 1;
    return inside;
  }

  private doubleQuoted(): string {
    let out = '';
    while (this.at < this.text.length) {
      const ch = this.text[this.at++] as string;
      if (ch === '"') return out;
      if (ch === '$') out += this.dollar();
      else if (ch === '\\' && ['"', '$', '\\'].includes(this.text[this.at] ?? '')) out += this.text[this.at++];
      else out += ch;
    }
    throw new WordError(`unterminated double quote in ${JSON.stringify(this.text)}`);
  }

  private name(): string {
    const start = this.at;
    while (this.at < this.text.length && NAME_CHAR.test(this.text[this.at] as string)) this.at++;
    return this.text.slice(start, this.at);
  }

  /** After a '$': a variable's value, or a literal '$' when no name follows. */
  private dollar(): string {
    if (this.text[this.at] !== '{') {
      const name = this.name();
      return name === '' ? '$' : (this.vars.get(name) ?? '');
    }
    this.at++;
    const name = this.name();
    if (name === '') throw new WordError(`bad substitution in ${JSON.stringify(this.text)}: \${ must be followed by a variable name`);
    const value = this.vars.get(name);
    if (this.text[this.at] === '}') {
      this.at++;
      return value ?? '';
    }
    const colon = this.text[this.at] === ':';
    if (colon) this.at++;
    const op = this.text[this.at++];
    if (op !== '-' && op !== '+') {
      throw new WordError(`unsupported substitution in ${JSON.stringify(this.text)}: only \${${name}}, \${${name}:-default}, \${${name}-default}, \${${name}:+alt} and \${${name}+alt} are supported`);
    }
    const alternative = this.word('}');
    this.at++;
    // with ':' an empty value counts as unset, as in sh
    const set = value !== undefined && (!colon || value !== '');
    if (op === '-') return set ? value : alternative;
    return set ? alternative : '';
  }
}

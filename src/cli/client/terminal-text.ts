/**
 * Text that came out of a sandbox, made safe for the caller's terminal.
 * A sandbox's output is hostile: escape sequences could retitle the window,
 * write the clipboard (OSC 52), move the cursor over what was printed
 * before, or answer queries as if typed. On a terminal only colours (SGR)
 * pass; every other escape sequence is dropped, and other control
 * characters but newline and tab are shown as \xNN. Written elsewhere (a
 * file, a pipe), the text goes as it came.
 */

/* eslint-disable no-control-regex -- matching control characters is the point */
// CSI … final byte, OSC … BEL/ST, and two-byte escapes.
const ESCAPE = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]|)/g;
const SGR = /^\x1b\[[0-9;]*m$/;
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f\x9b]/g;
/* eslint-enable no-control-regex */

export function forTerminal(text: string, terminal: boolean): string {
  if (!terminal) return text;
  return text
    .replace(/\r\n/g, '\n')
    .replace(ESCAPE, (sequence) => (SGR.test(sequence) ? sequence : ''))
    .replace(CONTROL, (char) => (char === '\x1b' ? char : `\\x${char.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

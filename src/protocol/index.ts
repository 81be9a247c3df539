/** protocol/: the types shared across rooms. For now, the error registry. */
export { BrigError, ERROR_CODES, EXIT, isBrigError } from './errors.ts';
export type { ErrorCode } from './errors.ts';

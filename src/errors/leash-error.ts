import type { ErrorCode } from './codes.js';

/**
 * A domain error: untrusted input or a refused decision. `description` is safe to show the
 * caller (it says what to fix); `detail` is for the audit event and logs only and never
 * carries a secret.
 */
export class LeashError extends Error {
  readonly code: ErrorCode;
  readonly description: string;
  readonly detail: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, description: string, detail?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(`${code}: ${description}`, options);
    this.name = 'LeashError';
    this.code = code;
    this.description = description;
    this.detail = detail;
  }
}

export function isLeashError(err: unknown): err is LeashError {
  return err instanceof LeashError;
}

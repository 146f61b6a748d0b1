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
  /**
   * Extra members of the wire error body, safe for the caller (e.g. `approval_id`,
   * `interval`, `expires_in` of a pending approval). Never a secret.
   */
  readonly fields: Readonly<Record<string, string | number>> | undefined;

  constructor(code: ErrorCode, description: string, detail?: Record<string, unknown>, options?: { cause?: unknown; fields?: Readonly<Record<string, string | number>> }) {
    super(`${code}: ${description}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LeashError';
    this.code = code;
    this.description = description;
    this.detail = detail;
    this.fields = options?.fields;
  }
}

export function isLeashError(err: unknown): err is LeashError {
  return err instanceof LeashError;
}

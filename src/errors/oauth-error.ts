import { ERROR_CODES } from './codes.js';
import { safeErrorDescription } from '../client/error-description.js';
import { LeashError } from './leash-error.js';

export interface OAuthErrorResponse {
  status: number;
  body: { error: string; error_description: string; readonly [field: string]: string | number };
}

/**
 * The one mapping point from domain errors to RFC 6749 §5.2 / RFC 8693 wire errors.
 * The description names the Leash code (several codes share one wire error, e.g. every
 * attestation failure is `invalid_request`) and keeps to RFC 6749's character set.
 * Anything that is not a LeashError is an internal fault: the caller learns only that the
 * service is unavailable (fail closed), never a stack trace or a backend's message.
 */
export function toOAuthError(err: unknown): OAuthErrorResponse {
  if (err instanceof LeashError) {
    const entry: { oauth: string; status: number; shownAs?: string } = ERROR_CODES[err.code];
    // A deliberately indistinguishable refusal (another orchestrator's task) shows the code it imitates.
    const shown = entry.shownAs ?? err.code;
    // The error and its description always win over extra fields of the same name.
    return { status: entry.status, body: { ...err.fields, error: entry.oauth, error_description: safeErrorDescription(`${err.description} (${shown})`) } };
  }
  return {
    status: 503,
    body: { error: 'temporarily_unavailable', error_description: 'the broker could not complete the request; retry later' },
  };
}

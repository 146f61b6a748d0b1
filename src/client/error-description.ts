/**
 * RFC 6749 §5.2: `error_description` is limited to %x20-21 / %x23-5B / %x5D-7E (printable
 * ASCII without `"` and `\`). Descriptions echo request values (an audience, a scope, a
 * parameter name, an Origin header), so every renderer passes its text through here.
 */
const OUTSIDE_CHARSET = /[^\x20\x21\x23-\x5B\x5D-\x7E]/gu;

/** Long enough for every problem of an admin body; a whole echoed header is cut. */
export const MAX_ERROR_DESCRIPTION = 1024;

/**
 * Each character outside the set becomes the percent-encoding of its UTF-8 bytes (a
 * newline `%0A`, a quote `%22`, `é` `%C3%A9`), so the caller still sees what it sent and
 * nothing can break a log line, a header or a JSON consumer. Idempotent: `%` itself is in
 * the set. Cut to MAX_ERROR_DESCRIPTION characters, never inside an escape.
 */
export function safeErrorDescription(text: string): string {
  const encoded = text.replace(OUTSIDE_CHARSET, (ch) => [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
  if (encoded.length <= MAX_ERROR_DESCRIPTION) return encoded;
  let cut = MAX_ERROR_DESCRIPTION - 3;
  const tail = encoded.lastIndexOf('%', cut - 1);
  if (tail !== -1 && tail > cut - 3) cut = tail;
  return `${encoded.slice(0, cut)}...`;
}

/**
 * The same rule for an error body someone else built (oidc-provider's own errors):
 * returns the body with its description made safe, or the value untouched if it is not
 * an error body.
 */
export function withSafeErrorDescription<T>(body: T): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Buffer.isBuffer(body)) return body;
  const description = (body as { error_description?: unknown }).error_description;
  if (typeof description !== 'string') return body;
  const safe = safeErrorDescription(description);
  return safe === description ? body : { ...body, error_description: safe };
}

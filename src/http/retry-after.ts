/** Seconds a client waits after a 503 before it tries again (RFC 9110 §10.2.3). */
export const RETRY_AFTER_SECONDS = 2;

/**
 * Every 503 (`temporarily_unavailable`: a backend is down and Leash fails closed) says
 * when to come back, so clients back off instead of hammering a broker that is refusing.
 */
export function setRetryAfter(res: { setHeader(name: string, value: string): unknown }, status: number): void {
  if (status === 503) res.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
}

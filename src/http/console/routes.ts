import type { RouteSpec } from '../surface.js';

/**
 * Every route of the security console (served only when `settings.console.enabled`; the
 * surface answers 404 for all of them otherwise). Pages are GET; every state change is a
 * POST form with the session's CSRF token.
 */
export const CONSOLE_ROUTES: readonly RouteSpec[] = [
  { path: '/console', methods: ['GET'] },
  { path: '/console/login', methods: ['GET'] },
  { path: '/console/callback', methods: ['GET'] },
  { path: '/console/logout', methods: ['POST'] },
  { path: '/console/assets/console.js', methods: ['GET'] },
  { path: '/console/assets/console.css', methods: ['GET'] },
  { path: '/console/approvals', methods: ['GET'] },
  { path: '/console/approvals/events', methods: ['GET'] },
  { path: '/console/approvals/:id/approve', methods: ['POST'] },
  { path: '/console/approvals/:id/deny', methods: ['POST'] },
  { path: '/console/plugins', methods: ['GET'] },
  { path: '/console/plugins/:id/suspend', methods: ['POST'] },
  { path: '/console/plugins/:id/resume', methods: ['POST'] },
  { path: '/console/tasks', methods: ['GET'] },
  { path: '/console/tasks/:id', methods: ['GET'] },
  { path: '/console/tasks/:id/end', methods: ['POST'] },
  { path: '/console/review', methods: ['GET'] },
  { path: '/console/keys', methods: ['GET'] },
  { path: '/console/keys/rotate', methods: ['POST'] },
  { path: '/console/keys/:kid/retire', methods: ['POST'] },
];

/**
 * The console's Content-Security-Policy: its own script and stylesheet only, no inline
 * script or style, no framing, forms post only to itself.
 */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

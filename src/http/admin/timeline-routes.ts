import { Type } from '@sinclair/typebox';
import type { Task } from '../../store/records.js';
import { timelineJson, timelineText, type Timeline } from '../../usage/timeline.js';
import { timelineHtml } from '../../usage/timeline-html.js';
import { adminRoute, type AdminRoute, type AdminRouteSpec } from './route.js';

export const TimelineQuery = Type.Object({
  format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('text'), Type.Literal('html')], { description: 'json (default), text or html' })),
});

/** The page is data only: no script, no external resource, not framable. */
const HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * `GET /admin/tasks/{id}/timeline[?format=json|text|html]`: the task's timeline for the
 * orchestrator that opened it or a security admin (another orchestrator's task answers like
 * an unknown one, as `GET /tasks/{id}` does). `html` is one self-contained page with the
 * swim-lane picture.
 */
export const TIMELINE_ROUTES = {
  get: { route: 'tasks.timeline', method: 'GET', path: '/admin/tasks/:id/timeline', roles: ['orchestrator', 'security'], query: TimelineQuery, ownedTask: { anyOwner: ['security'] } },
} as const satisfies Record<string, AdminRouteSpec>;

export interface TimelineRouteDeps {
  /** The task's timeline, with the events this replica recorded a moment ago indexed first. */
  readonly timeline: (task: Task) => Promise<Timeline>;
}

export function timelineRoutes(deps: TimelineRouteDeps): AdminRoute[] {
  return [
    adminRoute(TIMELINE_ROUTES.get, async ({ task, query }) => {
      const timeline = await deps.timeline(task!);
      if (query.format === 'text') return { body: undefined, raw: { contentType: 'text/plain; charset=utf-8', content: timelineText(timeline) } };
      if (query.format === 'html') return { body: undefined, raw: { contentType: 'text/html; charset=utf-8', content: timelineHtml(timeline), headers: { 'Content-Security-Policy': HTML_CSP } } };
      return { body: timelineJson(timeline) };
    }),
  ];
}

import { Router } from 'express';
import { LeashError } from '../../errors/leash-error.js';
import type { ReviewReport } from '../../review/review.js';
import { admit, type AdminRouteDeps } from './tasks-routes.js';
import { sendAdminError } from './errors.js';

/** `GET /admin/review` (role security): the governance review of the running broker, as `leash review --format json`. */
export function reviewRouter(deps: AdminRouteDeps & { review: (opts: { windowDays?: number }) => Promise<ReviewReport> }): Router {
  const router = Router();
  router.get('/', async (req, res) => {
    try {
      await admit(deps, req, 'review.get', 'security');
      const raw = req.query.window_days;
      if (raw !== undefined && (typeof raw !== 'string' || !/^[1-9][0-9]{0,3}$/.test(raw))) {
        throw new LeashError('ERR_ADMIN_INVALID', 'window_days must be a whole number of days from 1 to 9999');
      }
      const report = await deps.review({ windowDays: raw === undefined ? undefined : Number(raw) });
      deps.metrics.adminRequests.inc({ route: 'review.get', outcome: 'ok' });
      res.set('Cache-Control', 'no-store').json(report);
    } catch (err) {
      sendAdminError(res, err);
    }
  });
  return router;
}

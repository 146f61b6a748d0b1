// `leash serve` defaults to one worker per core (settings.workers: auto). The tests that
// spawn it test the one-process path unless they ask for workers (--workers wins over this).
process.env.LEASH_WORKERS ??= '1';

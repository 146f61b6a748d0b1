/** Environment variable naming the JSON file of request bodies read by load/next-body.cjs in autocannon workers. */
export const BODIES_ENV = 'LEASH_BENCH_BODIES_FILE';

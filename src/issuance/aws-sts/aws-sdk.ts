import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * The AWS SDK clients, loaded on first use: a Leash that never issues AWS credentials or
 * writes to IAM never loads them (they are most of a cold start). Both packages resolve to
 * their CommonJS build under `import` and `require` alike, so clients and commands are
 * always of one copy.
 */
export const stsSdk = (): typeof import('@aws-sdk/client-sts') => require('@aws-sdk/client-sts') as typeof import('@aws-sdk/client-sts');
export const iamSdk = (): typeof import('@aws-sdk/client-iam') => require('@aws-sdk/client-iam') as typeof import('@aws-sdk/client-iam');

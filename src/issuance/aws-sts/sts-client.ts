import type { STSClient, STSClientConfig } from '@aws-sdk/client-sts';
import { stsSdk } from './aws-sdk.js';

export type AwsStsMode = 'web-identity' | 'assume-role';

export interface StsClientOptions {
  readonly region: string;
  readonly endpoint: string | undefined;
  readonly mode: AwsStsMode;
  /** assume-role only; default: the SDK's default provider chain (env, profile, IMDS, ...). */
  readonly credentials?: STSClientConfig['credentials'];
}

/** The ID smithy gives the "no authentication" scheme. */
const NO_AUTH = 'smithy.api#noAuth';

/**
 * One STS client per mode. Leash retries itself (bounded, with backoff it controls), so the
 * SDK makes one attempt. In web-identity mode the client holds no credentials and never
 * signs: the endpoint rules for some regions name SigV4 for every operation, which would
 * make the SDK look for AWS keys Leash deliberately does not have, so the auth scheme is
 * pinned to "none" and any credential lookup fails loudly instead of walking the chain.
 */
export function createStsClient(opts: StsClientOptions): STSClient {
  const { STSClient } = stsSdk();
  const common = {
    region: opts.region,
    ...(opts.endpoint === undefined ? {} : { endpoint: opts.endpoint }),
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 3_000, requestTimeout: 10_000 },
  };
  if (opts.mode === 'web-identity') {
    if (opts.credentials !== undefined) throw new TypeError('createStsClient: web-identity mode takes no AWS credentials');
    return new STSClient({
      ...common,
      httpAuthSchemeProvider: () => [{ schemeId: NO_AUTH }],
      credentials: () => Promise.reject(new TypeError('web-identity STS calls are unsigned; no AWS credentials are used')),
    });
  }
  return new STSClient({ ...common, ...(opts.credentials === undefined ? {} : { credentials: opts.credentials }) });
}

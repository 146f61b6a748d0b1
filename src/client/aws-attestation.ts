import type { STSClientConfig } from '@aws-sdk/client-sts';

/** RFC 8693 token type of a signed GetCallerIdentity request (Leash-defined). */
export const AWS_ATTESTATION_TOKEN_TYPE = 'urn:leash:params:oauth:token-type:aws-sigv4-get-caller-identity';

export interface AwsAttestationOptions {
  /** The server id Leash is configured with (the aws issuer's `audience`): sent, signed, as X-Leash-Server-ID. */
  readonly serverId: string;
  /** Region of the signature; must be the one Leash expects (its aws issuer's `region`, default us-east-1). */
  readonly region?: string;
  /** The STS endpoint Leash sends the request to (its aws issuer's `issuer`); default: the region's STS endpoint. */
  readonly endpoint?: string;
  /** AWS credentials; default: the SDK's provider chain (instance profile, ECS/EKS roles, environment...). */
  readonly credentials?: STSClientConfig['credentials'];
}

/** Thrown inside the SDK to stop it after signing: the request is captured, never sent. */
class Captured extends Error {}

/**
 * A `subject_token` for Leash's `aws` attestation kind: a GetCallerIdentity request signed
 * by the AWS SDK with this workload's credentials (SigV4, X-Leash-Server-ID among the
 * signed headers), encoded as base64url JSON `{ method, url, headers, body }`. It is never
 * sent to AWS by this function: Leash replays it to STS. Valid for 15 minutes at most;
 * make one per exchange.
 */
export async function awsAttestation(opts: AwsAttestationOptions): Promise<string> {
  if (!opts.serverId) throw new TypeError('awsAttestation: serverId is required');
  const { STSClient, GetCallerIdentityCommand } = await import('@aws-sdk/client-sts');
  let captured: { method: string; protocol: string; hostname: string; port?: number; path: string; headers: Record<string, string>; body?: unknown } | undefined;
  const client = new STSClient({
    region: opts.region ?? 'us-east-1',
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    maxAttempts: 1,
    requestHandler: {
      handle: async (request: NonNullable<typeof captured>) => {
        captured = request;
        throw new Captured();
      },
    } as unknown as STSClientConfig['requestHandler'],
  });
  // Added before the signing step, so the signature covers it.
  client.middlewareStack.add(
    (next) => async (args) => {
      (args.request as { headers: Record<string, string> }).headers['x-leash-server-id'] = opts.serverId;
      return next(args);
    },
    { step: 'build', name: 'leashServerIdHeader' },
  );
  try {
    await client.send(new GetCallerIdentityCommand({}));
  } catch (err) {
    if (!(err instanceof Captured) && !captured) throw err;
  } finally {
    client.destroy();
  }
  if (!captured) throw new Error('awsAttestation: the AWS SDK did not produce a signed request');
  const port = captured.port ? `:${captured.port}` : '';
  const request = {
    method: captured.method,
    url: `${captured.protocol}//${captured.hostname}${port}${captured.path}`,
    headers: captured.headers,
    body: typeof captured.body === 'string' ? captured.body : Buffer.from(captured.body as Uint8Array).toString('utf8'),
  };
  return Buffer.from(JSON.stringify(request), 'utf8').toString('base64url');
}
